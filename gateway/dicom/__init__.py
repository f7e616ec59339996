"""DICOM networking: the C-STORE intake (`listener`) and delivery of opened images to a PACS (`delivery`)."""
