"""Know before you have an NPU: static API analysis of a project and the dynamic operator report.

* :mod:`transplant.analysis.facts` — torch_npu's operator registry and Huawei's API lists (data files);
* :mod:`transplant.analysis.static` — every torch API use, resolved and classified (``transplant -i``);
* :mod:`transplant.analysis.static_report` — the msFmkTransplt-style analysis CSVs;
* :mod:`transplant.analysis.op_report` — merges what the emulator recorded (``transplant run --op-report``)
  into CSV, JSON and a summary.

Nothing here imports torch, the rewriter or the emulator.
"""
