"""The peer side of bench/train-speed.sh: a torchvision network trained with AdamW and
cross-entropy on random images, the same loop as `engine-worker bench-train`; prints one
JSON line."""

import argparse
import json
import time

import torch
import torchvision


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    build = {
        "resnet18": torchvision.models.resnet18,
        "resnet50": torchvision.models.resnet50,
        "efficientnet_b0": torchvision.models.efficientnet_b0,
        "convnext_tiny": torchvision.models.convnext_tiny,
    }[a.backbone]
    device = torch.device(a.device)
    net = build(num_classes=2).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size, device=device)
    y = torch.randint(0, 2, (a.batch,), device=device)
    times = []
    for i in range(a.warmup + a.steps):
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - started)
    times.sort()
    print(json.dumps({
        "side": "pytorch",
        "backbone": a.backbone,
        "size": a.size,
        "batch": a.batch,
        "steps": a.steps,
        "threads": a.threads,
        "torch": torch.__version__,
        "images_per_second": a.batch * a.steps / sum(times),
        "median_step_seconds": times[len(times) // 2],
    }))


if __name__ == "__main__":
    main()
