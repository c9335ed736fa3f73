"""lm-evaluation-harness (0.4.x) bridge: the harness model as lm-eval model `harness-vlm`,
the multiple-choice adapters as lm-eval tasks on local data.

Importing this module registers the model (lm_eval.api.registry.register_model). The task
YAMLs in evals/lm_eval_tasks/ (`harness_videomme`, `harness_videomme_subtitles`,
`harness_longvideobench`, `harness_mlvu`, `harness_perceptiontest`, `harness_nextqa`,
`harness_vnbench`, `harness_longvideo_reason`, and the text math tasks `harness_gsm8k`,
`harness_math500`) name `HarnessVideoTask` through `class:
!function evals.lm_eval_bridge.HarnessVideoTask`, so loading a YAML also imports this module.
Where the data is comes from lm-eval's task metadata: `data_dir` (or `<task>_dir`, e.g.
`videomme_dir`, when several tasks run at once), plus `frames` (default 16) and `sample_fps`
(and `video_dir` for longvideo_reason). A record an adapter drops as unusable stops the task:
lm-eval has no place to report it.

The lm_eval CLI looks the model up before it loads tasks by name, so give the task YAML
paths (loading them imports this module and registers the model):

    lm_eval --model harness-vlm --model_args pretrained=CKPT,max_new_tokens=16,batch_size=8 \
        --tasks evals/lm_eval_tasks/videomme.yaml \
        --metadata '{"data_dir": "/data/Video-MME", "frames": 64}'

(`--include_path evals/lm_eval_tasks --tasks harness_videomme` also works when this module
is imported first, e.g. from Python; `lm_eval.simple_evaluate(model="harness-vlm", ...)`
after `import evals.lm_eval_bridge`.)

Same prompts, frames, batching, greedy decoding and extraction as `harness eval`, so the
accuracy is the same; the differences are lm-eval's: a video that cannot be decoded gives
an empty answer counted wrong (lm-eval has no skip), and there are no breakdowns (the
per-question metrics are `acc` and `unparsed`). ActivityNet-QA (LLM judge) is not bridged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.api.task import Task
from lm_eval.config.task import TaskConfig
from lm_eval.filters import build_filter_ensemble
from tqdm import tqdm

from evals.model import HarnessVLM, VideoQuery
from evals.subtitles import read_srt, subtitle_block
from evals.tasks import build_benchmark
from harness.data.video import VideoDecodeError, load_video, probe_video, sample_frame_indices

log = logging.getLogger(__name__)
DEFAULT_FRAMES = 16


@register_model("harness-vlm")
class HarnessLM(LM):
    """`generate_until` only: the benchmarks are generation + extraction, as the protocols
    score them (no option log-likelihoods)."""

    MULTIMODAL = True

    def __init__(self, pretrained: str, engine: str = "hf", max_new_tokens: int = 1024,
                 batch_size: int | str = 8, system_prompt: str | None = None, **unused) -> None:
        super().__init__()
        if unused:  # lm-eval passes device / max_batch_size; the engine places the model
            log.info("harness-vlm ignores %s", sorted(unused))
        bs = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.vlm = HarnessVLM(pretrained, engine=engine, max_new_tokens=int(max_new_tokens),
                              batch_size=bs, system_prompt=system_prompt)
        self.missing_videos: list[str] = []

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Requests in order, in chunks of the batch size (as `harness eval` batches them);
        consecutive questions on one video reuse its encoding."""
        out: list[str] = []
        last: tuple | None = None
        embeds = None
        bs = self.vlm.batch_size
        for start in tqdm(range(0, len(requests), bs), disable=disable_tqdm, desc="harness-vlm"):
            queries, slots = [], []
            for req in requests[start : start + bs]:
                prompt, _gen_kwargs, visual = req.args
                if visual is None:  # a text benchmark's question
                    slots.append(True)
                    queries.append(VideoQuery(prompt, None))
                    continue
                key = (visual["video"], visual["frames"], visual.get("sample_fps"))
                if key != last:
                    last, embeds = key, None
                    try:
                        clip = load_video(key[0], key[1], sample_fps=key[2])
                        embeds = self.vlm.encode(clip)
                    except VideoDecodeError as err:
                        log.warning("empty answer: %s", err)
                        self.missing_videos.append(key[0])
                slots.append(embeds is not None)
                if embeds is not None:
                    queries.append(VideoQuery(prompt, embeds))
            texts = iter(self.vlm.generate(queries)) if queries else iter(())
            out += [next(texts) if ok else "" for ok in slots]
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("harness-vlm scores by generation; use the harness_* tasks")

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError("harness-vlm scores by generation; use the harness_* tasks")


class HarnessVideoTask(Task):
    """One harness adapter as an lm-eval task. YAML keys: `task`, `benchmark` (an adapter
    name), `subtitles` (bool); data location and frames from the metadata (module doc)."""

    OUTPUT_TYPE = "generate_until"
    MULTIMODAL = True

    def __init__(self, config: dict | None = None) -> None:
        config = dict(config or {})
        meta = dict(config.get("metadata") or {})
        self.bench = build_benchmark(config["benchmark"], video_dir=meta.get("video_dir"))
        self.VERSION = self.bench.version
        self.subtitles = bool(config.get("subtitles", False))
        if self.subtitles and not self.bench.supports_subtitles:
            raise ValueError(f"{self.bench.name} has no subtitle protocol")
        data = meta.get(f"{self.bench.name}_dir") or meta.get("data_dir")
        if not data:
            raise ValueError(
                f"{config.get('task')}: say where the data is: --metadata "
                f"'{{\"data_dir\": DIR}}' (or \"{self.bench.name}_dir\")"
            )
        self.frames = int(meta.get("frames", DEFAULT_FRAMES))
        self.sample_fps = meta.get("sample_fps")
        self.items = self.bench.load(Path(data))
        if self.bench.dropped:  # lm-eval has no place to report them: refuse, as harness eval does by default
            listing = "\n".join(f"  {d['where']}: {d['reason']}" for d in self.bench.dropped[:10])
            raise ValueError(f"{self.bench.name}: {len(self.bench.dropped)} records dropped as unusable:\n{listing}")
        self._config = TaskConfig(
            task=config.get("task") or f"harness_{self.bench.name}", output_type="generate_until",
            generation_kwargs={"until": []}, num_fewshot=0, repeats=1, metadata=meta,
        )
        self._training_docs = self._fewshot_docs = self._instances = None
        self._filters = [build_filter_ensemble("none", [["take_first", None]])]
        self.fewshot_rnd = None

    def download(self, *args, **kwargs) -> None:  # local data only
        pass

    def has_training_docs(self) -> bool:
        return False

    def has_validation_docs(self) -> bool:
        return False

    def has_test_docs(self) -> bool:
        return True

    def test_docs(self) -> list[dict]:
        return [{"index": i, "qid": it.qid, "video": str(it.video)} for i, it in enumerate(self.items)]

    def fewshot_context(self, doc, num_fewshot=0, **kwargs) -> str:
        if num_fewshot:
            raise ValueError("harness video tasks are zero-shot")
        return self.doc_to_text(doc)

    def doc_to_text(self, doc: dict) -> str:
        item = self.items[doc["index"]]
        block = None
        if self.subtitles:
            try:  # the frames the model will see (load_video samples the same indices)
                info = probe_video(item.video)
                cap = self.frames
                idx = sample_frame_indices(info.total_frames, cap, video_fps=info.fps,
                                           sample_fps=self.sample_fps)
                block = subtitle_block(read_srt(item.subtitle) if item.subtitle else None, idx, info.fps)
            except VideoDecodeError:
                block = ""  # the model answers "" for this video anyway
        return self.bench.prompt(item, block)

    def doc_to_target(self, doc: dict) -> str:
        return self.items[doc["index"]].answer

    def construct_requests(self, doc: dict, ctx: str, **kwargs) -> Instance:
        visual = None if self.bench.modality == "text" else {
            "video": doc["video"], "frames": self.frames, "sample_fps": self.sample_fps}
        return Instance(request_type="generate_until", doc=doc, arguments=(ctx, {"until": []}, visual),
                        idx=0, metadata=kwargs.get("metadata", (None, None, None)))

    def process_results(self, doc: dict, results: list[str]) -> dict:
        r = self.bench.score(self.items[doc["index"]], results[0])
        return {"acc": float(r["correct"]), "unparsed": float(r["unparsed"])}

    def aggregation(self) -> dict:
        from lm_eval.api.metrics import mean

        return {"acc": mean, "unparsed": mean}

    def higher_is_better(self) -> dict:
        return {"acc": True, "unparsed": False}
