"""Development and demonstration tooling that ships beside the gateway but is not part of its runtime.

`demo` runs the whole chain locally (`medshield demo`); `scanner_sim` makes and publishes test images the way
a scanner would; `security_report` measures what the protected output looks like to an analyst
(`medshield report`). The gateway (`gateway`) never imports this package; its command line registers the two
commands from `medshield_tools.cli`.
"""
