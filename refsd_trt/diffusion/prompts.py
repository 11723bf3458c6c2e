"""Prompt encoding as diffusers' SD and SDXL pipelines do it, cached per unique prompt.

SD conditions the UNet on the last hidden state of one CLIP encoder. SDXL concatenates the
*penultimate* hidden states of its two encoders along the feature axis and also feeds the second
encoder's projected pooled embedding ("text_embeds"). Tokenization happens on the host (it is text);
the embeddings stay on the engines' device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt.diffusion.components import DiffusionComponents


@dataclass
class PromptEmbeddings:
    hidden: torch.Tensor  # (n, tokens, dim): the UNet's encoder_hidden_states
    pooled: torch.Tensor | None  # (n, projection_dim): SDXL's text_embeds; None for SD

    def rows(self, index: Sequence[int]) -> PromptEmbeddings:
        pick = torch.as_tensor(index, device=self.hidden.device)
        return PromptEmbeddings(self.hidden[pick], None if self.pooled is None else self.pooled[pick])

    @staticmethod
    def cat(parts: Sequence[PromptEmbeddings]) -> PromptEmbeddings:
        pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])
        return PromptEmbeddings(torch.cat([p.hidden for p in parts]), pooled)


class PromptEncoder:
    """Keeps the embeddings of the ``capacity`` most recently used prompts: a long-running service
    sees endless distinct prompts, and an SDXL row is about 0.3 MB in float16."""

    def __init__(self, components: DiffusionComponents, capacity: int = 256):
        self.components, self.capacity = components, capacity
        self._cache: OrderedDict[str, PromptEmbeddings] = OrderedDict()

    def encode(self, prompts: Sequence[str]) -> PromptEmbeddings:
        """One row per prompt; a cached prompt does not run the text encoders again."""
        distinct = list(dict.fromkeys(prompts))
        rows = {p: self._cache[p] for p in distinct if p in self._cache}
        for prompt in rows:
            self._cache.move_to_end(prompt)
        missing = [p for p in distinct if p not in rows]
        limit = min(e.spec.axes["batch"].max for e in self.components.text_encoders)
        for start in range(0, len(missing), limit):
            chunk = missing[start:start + limit]
            fresh = self._run(chunk)
            for i, prompt in enumerate(chunk):
                rows[prompt] = self._cache[prompt] = fresh.rows([i])
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return PromptEmbeddings.cat([rows[p] for p in prompts])

    def negative(self, negative_prompt: str | None, n: int) -> PromptEmbeddings:
        """The unconditional rows for classifier-free guidance, ``n`` times.

        SDXL checkpoints with ``force_zeros_for_empty_prompt`` use zeros when no negative prompt is
        given; otherwise (and always for SD) the negative prompt, default "", is encoded.
        """
        if negative_prompt is None and self.components.sdxl and self.components.force_zeros_for_empty_prompt:
            one = self.encode([""])  # only for the shapes (cached after the first call)
            one = PromptEmbeddings(torch.zeros_like(one.hidden), torch.zeros_like(one.pooled))
        else:
            one = self.encode([negative_prompt or ""])
        return one.rows([0] * n)

    def _run(self, prompts: list[str]) -> PromptEmbeddings:
        hidden, pooled = [], None
        for tokenizer, encoder in zip(self.components.tokenizers, self.components.text_encoders):
            ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            out = encoder.run({"input_ids": ids.to(encoder.device)})
            if self.components.sdxl:
                hidden.append(out["penultimate_hidden_state"])
                pooled = out["pooled"]  # the last encoder's projected pooled output, as diffusers keeps it
            else:
                hidden.append(out["last_hidden_state"])
        return PromptEmbeddings(torch.cat(hidden, dim=-1), pooled)
