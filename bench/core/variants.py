"""Names of the prediction variants every method reports (torch-free).

A method's ``predict`` returns one prediction per variant of the same fit:

* ``WO_VG`` ("w/o VG"): the text branch alone, no vision guidance (no memory
  of the shots' patch features); for WinCLIP the zero-shot branch;
* ``W_VG`` ("w/ VG"): fused with the visual memory of the k shots (WinCLIP+).

The strings are what records, reports and paper tables carry; use these
constants instead of repeating them.
"""

WO_VG = "w/o VG"
W_VG = "w/ VG"
VARIANTS = (WO_VG, W_VG)
