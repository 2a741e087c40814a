"""Options of the emitters that the placement plan does not carry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmitOptions:
    """Per-format choices (defaults documented in docs/deploy.md).

    Attributes
    ----------
    lora_dir:
        ``vllm`` scripts: adapter path prefix on the serving host, ``<lora_dir>/<id>``.
    image:
        ``kubernetes``: container image running ``vllm serve``; ``None`` means
        ``vllm/vllm-openai:v<plan's vLLM version>``.
    vllm_version:
        vLLM release the plan was made for (the twin's), for the default image.
    model_uri:
        ``kserve``: ``spec.model.uri`` of the base model; ``None`` means ``hf://<hf_model>``.
    hf_token_secret:
        ``kubernetes``: Secret holding ``HF_TOKEN`` (key ``token``, optional), for gated
        models such as Llama-3.1.
    """

    lora_dir: str = "./adapters"
    image: str | None = None
    vllm_version: str = "0.8.5"
    model_uri: str | None = None
    hf_token_secret: str = "hf-token"

    def container_image(self) -> str:
        """The image of the ``vllm serve`` containers."""
        return self.image or f"vllm/vllm-openai:v{self.vllm_version}"
