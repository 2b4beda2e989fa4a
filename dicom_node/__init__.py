"""LDH Assist DICOM edge: receive, inbox, assemble, route, export. Knows DICOM, not neural networks."""
