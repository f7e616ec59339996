"""Known-answer vectors for gateway.biometrics.bch from the `galois` package (an independent BCH implementation).

Run once, in a separate environment (galois is not a project dependency), from the repository root:

    python -m venv /tmp/g && /tmp/g/bin/pip install galois==0.4.11
    /tmp/g/bin/python tests/biometrics/data/make_bch63_vectors.py

The JSON is committed and no test regenerates it.
"""

import json
from pathlib import Path

import galois
import numpy as np

rng = np.random.default_rng(20261204)
out = {"source": f"galois {galois.__version__}: galois.BCH(63, k), primitive polynomial x^6 + x + 1, systematic; "
                 "bit i of a codeword is the coefficient of x^i (galois lists the highest degree first, reversed here)",
       "codes": []}
for t, k in {1: 57, 2: 51, 3: 45, 4: 39, 5: 36, 6: 30, 7: 24, 10: 18, 11: 16, 13: 10, 15: 7}.items():
    code = galois.BCH(63, k, extension_field=galois.GF(2**6, irreducible_poly='x^6 + x + 1'))
    assert code.t == t, (k, code.t)
    assert str(code.extension_field.irreducible_poly) == 'x^6 + x + 1'
    g = code.generator_poly.coeffs[::-1].tolist()  # lowest degree first
    entry = {"t": t, "k": k, "generator_lowest_first": "".join(str(int(c)) for c in g), "vectors": []}
    for _ in range(4):
        msg = rng.integers(0, 2, k)
        cw = code.encode(galois.GF2(msg[::-1].copy()))  # galois: message highest degree first
        cw_low = np.array(cw)[::-1]  # lowest degree first
        # ours: codeword = parity (x^0..x^(n-k-1)) then message (x^(n-k)..x^(n-1)); message bit j = coef of x^(n-k+j)
        assert np.array_equal(cw_low[63 - k:], msg)
        e_in = rng.choice(63, t, replace=False)
        r_in = cw_low.copy()
        r_in[e_in] ^= 1
        dec, nerr = code.decode(galois.GF2(r_in[::-1].copy()), errors=True)
        assert nerr == t and np.array_equal(np.array(dec)[::-1], msg)
        e_out = rng.choice(63, t + 2, replace=False)
        r_out = cw_low.copy()
        r_out[e_out] ^= 1
        d2, n2 = code.decode(galois.GF2(r_out[::-1].copy()), errors=True)
        entry["vectors"].append({"message": "".join(map(str, msg)), "codeword": "".join(map(str, cw_low)),
                                 "within_t": "".join(map(str, r_in)),
                                 "beyond_t": "".join(map(str, r_out)),
                                 "beyond_t_galois_corrects": int(n2) if n2 >= 0 else -1,
                                 "beyond_t_galois_message": "".join(map(str, np.array(d2)[::-1])) if n2 >= 0 else None})
    out["codes"].append(entry)
(Path(__file__).parent / "bch63_vectors.json").write_text(json.dumps(out, indent=1))
