"""Parallel vs sequential scan of the linear recurrences, against the LSTM: train-step
tokens/s of one layer (seqlab.benchmark: forward + backward + Adam, median of timed
steps after warm-up, each ended by block_until_ready), all in one process.

  .venv/bin/python experiments/scan_speed.py                  # T = 1024, 8192; B=8, H=128
  .venv/bin/python experiments/scan_speed.py --seq_lens=1024 --batch=32 --hidden=256

About 3-4 minutes on a 2-core CPU. Prints a table and appends rows to
runs/scan_speed/results.jsonl. (The throughput study, experiments/throughput.py,
draws lru:sequential and lru:parallel as separate lines over all T.)
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqlab import benchmark, writer  # noqa: E402

MODELS = ('lstm', 'lru:sequential', 'lru:parallel', 'mingru:sequential', 'mingru:parallel')


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--seq_lens', default='1024,8192')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--hidden', type=int, default=128)
  ap.add_argument('--steps', type=int, default=5)
  ap.add_argument('--workdir', default='runs/scan_speed')
  a = ap.parse_args(argv)
  bc = benchmark.BenchConfig(hidden=a.hidden, batch=a.batch, steps=a.steps, warmup=1,
                             max_step_s=120.0)
  for seq_len in [int(t) for t in a.seq_lens.split(',')]:
    rows = {}
    for name in MODELS:
      r = benchmark.measure(name, bc, seq_len, float('nan'))
      rows[name] = r
      writer.append_jsonl_atomic(os.path.join(a.workdir, 'results.jsonl'), r)
      if r['status'] != 'ok':
        print(f'T={seq_len} {name}: {r["status"]} {r.get("error", "")}', flush=True)
        continue
      lstm = rows['lstm'].get('tokens_per_s_train', float('nan'))
      print(f'T={seq_len:>5} B={a.batch} H={a.hidden} {name:<18} '
            f'train {r["tokens_per_s_train"]:>10,.0f} tok/s  step {r["step_ms"]:8.1f} ms  vs lstm x{r["tokens_per_s_train"] / lstm:.2f}',
            flush=True)


if __name__ == '__main__':
  main()
