"""CPU seconds of one SIIT training epoch plus one validation, with and without the trainer's interchange
tables (``SIITTrainer._hl_table``), interleaved rounds, on one Tracr case; and whether both give the same
weights and metrics.

    OMP_NUM_THREADS=1 python benchmarks/siit_train_speed.py 74 [--rounds 2] [--samples 6000]

The recipe is the shipped one (strict 0.4, single loss, any_size sampling, strict source gradient,
lr 2e-3, 10 steps an epoch at least, defined positions). Measured, never asserted on; prints the load
average before and after.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--samples", type=int, default=6000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from cases import get_case
    from cases.tracr.siit import build_ll, tracr_data, tracr_setup
    from training.trainer import SIITTrainer, TrainConfig

    case = get_case(args.case)
    setup = tracr_setup(case, seed=0)
    data = tracr_data(case, args.samples, seed=0, scored="defined")
    cfg = TrainConfig(strict_weight=0.4, single_loss=True, siit_sampling="any_size", strict_source_grad=True,
                      min_steps_per_epoch=10, lr=2e-3)
    load0 = os.getloadavg()
    seconds: dict[str, list[float]] = {"full HL runs": [], "tables": []}
    last = {}
    for _ in range(args.rounds):
        for mode in seconds:
            t = SIITTrainer(setup.hl, build_ll(setup.ll_config), setup.corr, data, setup.output_type, cfg)
            if mode == "full HL runs":
                t._hl_table = lambda split: None
            c0 = time.process_time()
            t.train_epoch()
            metrics = t.evaluate("val")
            seconds[mode].append(time.process_time() - c0)
            last[mode] = ({k: v.clone() for k, v in t.ll.state_dict().items()}, metrics)
    (wa, ma), (wb, mb) = last.values()
    same = all(torch.equal(wa[k], wb[k]) for k in wa) and ma == mb
    print(f"case {args.case}: CPU s per epoch + validation (table build included), {args.rounds} interleaved rounds")
    for mode, xs in seconds.items():
        print(f"  {mode:<13} " + " / ".join(f"{x:.2f}" for x in xs))
    print(f"  same weights and metrics: {same}")
    print(f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
