"""Small helpers shared by test modules."""


def tiny_overrides(data_dir, out_dir, **extra):
    """Config overrides for fast recipe runs on the `toy_data` fixture."""
    base = {
        "data.dir": data_dir, "data.num_frames": 4, "run.out_dir": out_dir,
        "run.tensorboard": False, "run.progress": False, "run.eval_max_new_tokens": 8,
    }
    base.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in base.items()]
