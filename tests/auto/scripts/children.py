"""Run with TRANSPLANT_AUTO=1 only (no import of transplant anywhere): every process is on the NPU."""

import json
import multiprocessing
import sys

import torch


def probe(queue):
    import torch

    queue.put(str(torch.zeros(1, device="cuda").device))


if __name__ == "__main__":
    result = {"parent": str(torch.zeros(1, device="cuda").device), "auto_loaded": "transplant.auto" in sys.modules}
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=probe, args=(queue,))
    process.start()
    result["spawn"] = queue.get(timeout=120)
    process.join(timeout=60)
    print(json.dumps(result))
