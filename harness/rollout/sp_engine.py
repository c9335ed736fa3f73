"""Greedy decoding of one long prompt with its sequence split over an SP group: inference
on videos too long for one device (the paper's 8,192 frames), `harness eval` under torchrun.

Every rank of the group calls `generate` with the same prompts. Per prompt:

1. Prefill, sequence-parallel: the prompt is padded to a multiple of the group size and each
   rank runs the LLM on its slice with Ulysses attention (model/sp.py), keeping in its KV
   cache the keys and values of its slice only; no rank holds the whole prompt's
   activations or cache.
2. The rank holding the prompt's last position forms the first token's logits and
   broadcasts the token.
3. Decode: every rank runs the model for the new token; attention merges the ranks' partial
   softmaxes over their cache slices exactly (parallel/sp_decode.py). Every rank then holds
   the same logits; the token is taken from rank 0's (broadcast) so that all ranks stay on
   one sequence whatever their last bits.

The answers equal single-process greedy decoding up to float rounding (tests/parallel:
a 2-process eval answers as the 1-process eval). Greedy only: evaluation decodes greedily.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from transformers import DynamicCache

from harness.model.attention import RowLayout, packed_call_mask
from harness.model.interface import PromptEmbeds, VideoLM
from harness.model.positions import next_positions
from harness.model.sp import local_slice, padded_length
from harness.parallel.sp_decode import SPDecode
from harness.rollout.engine import RolloutEngineError, RolloutOutput, SamplingConfig


class SPGreedyEngine:
    """`RolloutEngine` (greedy) over a `VideoLM` whose prompts are split over `group`."""

    copies_weights = False

    def __init__(self, model: VideoLM, group: dist.ProcessGroup) -> None:
        self.model = model
        self.group = group

    def release(self) -> None:
        """Nothing held between calls."""

    def sync_weights(self, model: VideoLM, state=None) -> None:
        if model is not self.model:
            raise ValueError("SPGreedyEngine decodes with the model it was built with; got a different module")

    @torch.no_grad()
    def generate(self, prompts: list[PromptEmbeds], sampling: SamplingConfig) -> list[RolloutOutput]:
        if not sampling.greedy or sampling.n != 1:
            raise RolloutEngineError("the sequence-parallel engine decodes greedily, one answer per prompt "
                                     "(evaluation); sampling runs on the hf or vllm engines")
        return [self._one(i, p, sampling.max_new_tokens) for i, p in enumerate(prompts)]

    def _one(self, index: int, prompt: PromptEmbeds, max_new: int) -> RolloutOutput:
        model, group = self.model, self.group
        sp, rank = dist.get_world_size(group), dist.get_rank(group)
        dev = model.device
        length = len(prompt)
        chunk = padded_length(length, sp) // sp
        embeds = local_slice(prompt.embeds.to(dev)[None], 1, group)  # [1, Lc, D]
        positions = local_slice(prompt.positions.to(dev)[..., None, :], prompt.positions.dim(), group)  # [(3,) 1, Lc]
        segments = torch.zeros(1, length, dtype=torch.long, device=dev)  # one causal sequence
        cache = DynamicCache()
        hidden = model.language_model(inputs_embeds=embeds, position_ids=positions,
                                      attention_mask=packed_call_mask(embeds), past_key_values=cache, use_cache=True,
                                      sp_group=group, row_layout=RowLayout(segments).padded(chunk * sp)
                                      ).last_hidden_state  # [1, Lc, D]
        last_rank, last_local = divmod(length - 1, chunk)
        logits = model.lm_head(hidden[0, last_local if rank == last_rank else 0]).float()  # [V]
        step = SPDecode(group, valid=max(0, min(chunk, length - rank * chunk)), prefill=chunk, owner=rank == sp - 1)
        stops = set(model.stop_token_ids)
        tokens, logps = [], []
        for t in range(max_new):
            token = logits.argmax()[None]  # [1]
            logp = torch.log_softmax(logits, dim=-1)[token]
            src = last_rank if t == 0 else 0  # the rank whose logits decide
            pair = torch.cat([token.double(), logp.double()])
            dist.broadcast(pair, dist.get_global_rank(group, src), group=group)
            tokens.append(int(pair[0]))
            logps.append(float(pair[1]))
            if tokens[-1] in stops or t == max_new - 1:
                break
            pos = next_positions(prompt.positions, t + 1)[..., -1:].to(dev)  # [(3,) 1]
            hidden = model.language_model(
                inputs_embeds=model.embed_tokens(torch.tensor([[tokens[-1]]], device=dev)),
                position_ids=pos[..., None, :], past_key_values=cache, use_cache=True, sp_decode=step,
            ).last_hidden_state  # [1, 1, D]
            logits = model.lm_head(hidden[0, -1]).float()  # [V]
        finished = tokens[-1] in stops
        return RolloutOutput(index, 0, torch.tensor(tokens, dtype=torch.long),
                             torch.tensor(logps, dtype=torch.float32), finished)
