"""Rollout on the trainer's own HF model: a batched, KV-cached decode loop, the harness's one
decoding loop for `VideoLM`s (rollouts, evaluation, probes, local captioning in the data build).

transformers' `generate` is not used because it would recompute positions itself (for
Qwen2.5-VL via `get_rope_index`, a different M-RoPE rule from ours, see positions.py); here
every row uses exactly the positions `build_prompt` computed.

One chunk (at most `max_batch` sampled sequences) runs as:

1. Prefill each *distinct* prompt of the chunk once, left-padded to the longest with a 0/1
   attention mask (padding rows: zero embeds, position 0, never attended to). Left padding
   makes every row's last column its last prompt token, so one `[:, -1]` reads all logits.
2. Repeat the cache rows to one row per sample, so a long video prompt is prefilled once
   rather than `n` times.
3. Decode one token per row per step at position 1 + the row's largest position so far (all
   three M-RoPE axes move together, as `positions.next_positions`); the mask grows by a
   column of ones. Rows that emitted a stop token keep emitting it, and that tail is cut.

Each sampled row has its own `torch.Generator`, seeded from (`sampling.seed`, the prompt's
key x n + the sample's index): a row's tokens depend on nothing else, so batching
(`max_batch`), the other prompts of the call and which data-parallel rank samples it do
not change them. Without a seed the rows draw fresh seeds.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.model.interface import PromptEmbeds, VideoLM
from harness.rollout.engine import RolloutEngineError, RolloutOutput, SamplingConfig


class HFEngine:
    """`RolloutEngine` over a `VideoLM`'s `language_model` + `lm_head`."""

    def __init__(self, model: VideoLM, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch

    def generate(
        self, prompts: list[PromptEmbeds], sampling: SamplingConfig
    ) -> list[RolloutOutput]:
        """`sampling.n` responses per prompt, grouped by prompt (see `RolloutEngine`).

        Runs without autograd and with every submodule in eval mode; each submodule's own
        training flag is restored afterwards (a frozen vision tower left in eval stays so).
        """
        limit = self.model.max_positions
        for i, p in enumerate(prompts):
            last = int(p.positions.max()) + sampling.max_new_tokens
            if last >= limit:  # positions past the model's range decode garbage, silently
                raise ValueError(
                    f"prompt {i} reaches position {last} with its response ({len(p)} prompt rows + "
                    f"{sampling.max_new_tokens} new tokens), past the model's {limit} positions: "
                    f"use fewer frames (data.num_frames / --frames) or fewer new tokens")
        rows = [(i, s) for i in range(len(prompts)) for s in range(sampling.n)]
        device = next(self.model.parameters()).device
        flags = {module: module.training for module in self.model.modules()}
        self.model.eval()
        try:
            with torch.no_grad():
                out: list[RolloutOutput] = []
                for start in range(0, len(rows), self.max_batch):
                    chunk = rows[start : start + self.max_batch]
                    out += self._decode(prompts, chunk, sampling, device)
        finally:
            for module, flag in flags.items():
                module.training = flag
        return out

    copies_weights = False

    def release(self) -> None:
        """Nothing to give back: this engine holds no memory beyond the trainer's model."""

    def sync_weights(self, model: nn.Module, state=None) -> None:
        """Nothing to copy: this engine samples from the trainer's own module, so an optimizer
        step is visible at once. A different module is an error, since it would not be used."""
        if model is not self.model:
            raise ValueError(
                "HFEngine samples from the model it was built with; got a different module"
            )

    def _decode(
        self,
        prompts: list[PromptEmbeds],
        rows: list[tuple[int, int]],
        sampling: SamplingConfig,
        device: torch.device,
    ) -> list[RolloutOutput]:
        """Sample the (prompt_index, sample_index) `rows` as one padded batch."""
        model = self.model
        generators = [_row_generator(sampling, sampling.key(i) * sampling.n + s, device) for i, s in rows]
        stops = torch.tensor(model.stop_token_ids, device=device)
        eos = int(stops[0])  # what finished rows keep emitting
        distinct = sorted({i for i, _ in rows})
        slot = {i: k for k, i in enumerate(distinct)}
        embeds, positions, mask = left_pad([prompts[i] for i in distinct], device)
        res = model.language_model(
            inputs_embeds=embeds, position_ids=positions, attention_mask=mask, use_cache=True
        )
        cache = res.past_key_values
        expand = torch.tensor([slot[i] for i, _ in rows], device=device)  # [B]
        cache.batch_select_indices(expand)
        hidden = res.last_hidden_state[expand, -1]  # [B, D]
        mask = mask[expand]  # [B, L]
        first = torch.stack([prompts[i].positions.max() for i, _ in rows]).to(device) + 1  # [B]

        b = len(rows)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        tokens, logps = [], []
        for step in range(sampling.max_new_tokens):
            logits = model.lm_head(hidden).float()  # [B, V]
            token = sample_tokens(logits, sampling, generators)  # [B]
            token = torch.where(done, torch.full_like(token, eos), token)
            logp = torch.log_softmax(logits, dim=-1).gather(-1, token[:, None])[:, 0]  # [B]
            tokens.append(token)
            logps.append(logp)
            done |= torch.isin(token, stops)
            if bool(done.all()) or step == sampling.max_new_tokens - 1:
                break
            step_pos = (first + step)[:, None]  # [B, 1]
            if positions.dim() == 3:
                step_pos = step_pos.expand(3, -1, -1)  # [3, B, 1]: M-RoPE axes move together
            mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)  # [B, L+step+1]
            res = model.language_model(
                inputs_embeds=model.embed_tokens(token)[:, None],
                position_ids=step_pos,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
            )
            cache = res.past_key_values
            hidden = res.last_hidden_state[:, -1]  # [B, D]

        token_ids = torch.stack(tokens, dim=1).cpu()  # [B, T]
        logprobs = torch.stack(logps, dim=1).cpu()  # [B, T]
        return [_cut(i, s, token_ids[row], logprobs[row], stops) for row, (i, s) in enumerate(rows)]


def left_pad(
    prompts: list[PromptEmbeds], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-align prompts in one batch: embeds [P, L, D], positions [P, L] or [3, P, L],
    attention mask [P, L] (long); padding is zero everywhere (masked, so its value is moot)."""
    dims = {p.positions.dim() for p in prompts}
    if len(dims) != 1:
        raise ValueError(f"prompts mix 1-D and M-RoPE positions (dims {sorted(dims)})")
    length = max(len(p) for p in prompts)
    head = prompts[0]
    embeds = head.embeds.new_zeros(len(prompts), length, head.embeds.shape[-1])  # [P, L, D]
    positions = head.positions.new_zeros(*head.positions.shape[:-1], len(prompts), length)
    mask = torch.zeros(len(prompts), length, dtype=torch.long)  # [P, L]
    for row, prompt in enumerate(prompts):
        pad = length - len(prompt)
        embeds[row, pad:] = prompt.embeds
        positions[..., row, pad:] = prompt.positions
        mask[row, pad:] = 1
    return embeds.to(device), positions.to(device), mask.to(device)


def _row_generator(sampling: SamplingConfig, row_key: int, device: torch.device) -> torch.Generator | None:
    if sampling.greedy:
        return None
    g = torch.Generator(device=device)
    if sampling.seed is None:
        g.seed()
    else:
        g.manual_seed((sampling.seed * 1_000_003 + row_key) % (1 << 63))
    return g


def sample_tokens(
    logits: torch.Tensor, sampling: SamplingConfig, generators: list[torch.Generator | None]
) -> torch.Tensor:
    """logits [B, V] -> tokens [B]: argmax if greedy, else nucleus sampling at temperature,
    row b drawing from generators[b]."""
    if not bool(torch.isfinite(logits).all()):
        raise RolloutEngineError("the policy's logits are not finite (NaN or inf weights: a diverged update or a "
                                 "damaged checkpoint); resume from an earlier checkpoint or lower optim.lr")
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)  # [B, V]
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)  # [B, V]
        keep = sorted_p.cumsum(dim=-1) - sorted_p < sampling.top_p  # the top token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)  # [B, V]
    return torch.cat([torch.multinomial(probs[b : b + 1], 1, generator=g)[:, 0]
                      for b, g in enumerate(generators)])  # [B]


def _cut(
    prompt_index: int, sample_index: int, token_ids: torch.Tensor, logprobs: torch.Tensor, stops: torch.Tensor
) -> RolloutOutput:
    """Drop everything after the first eos (the finished row's filler)."""
    (hits,) = torch.isin(token_ids, stops.to(token_ids.device)).nonzero(as_tuple=True)
    end = int(hits[0]) + 1 if hits.numel() else token_ids.shape[0]
    return RolloutOutput(
        prompt_index, sample_index, token_ids[:end], logprobs[:end], bool(hits.numel())
    )
