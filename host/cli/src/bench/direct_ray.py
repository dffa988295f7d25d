"""The baseline of `backplane bench --ray`: N trivial tasks submitted at once
with Ray's own Python API on a private local Ray, best of ROUNDS, after a
warm-up. Prints `RESULT <tasks/s>`.

Usage: python direct_ray.py N ROUNDS NUM_CPUS
"""
import shutil
import sys
import tempfile
import time

import ray

n, rounds, cpus = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="bpbench-", dir="/tmp")
ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=tmp, logging_level="ERROR")


@ray.remote
def noop(x):
    return x


def batch(count):
    return ray.get([noop.remote(b"x") for _ in range(count)])


batch(500)
best = 0.0
for _ in range(rounds):
    start = time.time()
    batch(n)
    best = max(best, n / (time.time() - start))
ray.shutdown()
shutil.rmtree(tmp, ignore_errors=True)
print("RESULT %.1f" % best, flush=True)
