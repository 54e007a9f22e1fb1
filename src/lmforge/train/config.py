"""The schema of a training recipe (`lmforge train RECIPE.yaml key=value ...`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmforge.config import ModelConfig, Section

Template = Literal["auto", "chatml", "llama3", "qwen", "alpaca", "plain"]
ADAPTER_METHODS = ("lora", "dora", "qlora")


class DataConfig(Section):
    train: list[str] = Field(description="training files or folders (jsonl, json, csv, parquet, txt)")
    eval: list[str] = Field(default_factory=list, description="held-out files for eval loss")
    format: Literal["auto", "text", "alpaca", "messages", "preference", "unpaired", "prompt"] = Field(
        "auto", description="record schema; auto = by the first record's keys (text, messages or alpaca for "
        "pretrain and sft; prompt/chosen/rejected pairs or prompt/completion/label for rm and dpo; prompt for grpo)"
    )
    on_error: Literal["raise", "skip"] = Field("raise", description="what to do with a malformed record")
    max_length: int = Field(512, ge=8, description="longest sequence in tokens")
    truncation: Literal["right", "left", "drop"] = Field(
        "right", description="for examples over max_length: cut the end, cut the start, or drop the example"
    )
    packing: bool | None = Field(
        None, description="pack several examples per sequence, no attention across them (default: on for pretrain)"
    )
    template: Template = Field(
        "auto", description="chat template; auto = the tokenizer's own, else chatml"
    )
    system: str | None = Field(None, description="system prompt added to conversations that have none")
    fraction: float = Field(
        1.0, gt=0, le=1, description="train on this share of the examples: a fixed random subset, nested across "
        "fractions (data-size sweeps)"
    )
    replay: list[str] = Field(
        [], description="files or folders mixed into the training examples against forgetting (pretrain and sft): "
        "text records train on every token, chat and alpaca records through the template; their schema is detected "
        "from their records"
    )
    replay_share: float | None = Field(
        None, gt=0, lt=1, description="share of an epoch's training examples drawn from data.replay, with a fixed "
        "seed (repeated if the replay set is smaller); needs data.replay"
    )

    @model_validator(mode="before")
    @classmethod
    def _paths_as_list(cls, data):
        for key in ("train", "eval", "replay"):
            if isinstance(data, dict) and isinstance(data.get(key), str):
                data[key] = [data[key]]
        return data

    @model_validator(mode="after")
    def _replay_with_share(self) -> "DataConfig":
        if bool(self.replay) != (self.replay_share is not None):
            given, missing = ("replay", "replay_share") if self.replay else ("replay_share", "replay")
            raise ValueError(f"data.{given} needs data.{missing}: replay files and the share of the training "
                             "examples they make up come together")
        return self


class OptimConfig(Section):
    epochs: float = Field(1.0, gt=0, description="passes over the training data")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    batch_size: int = Field(8, ge=1, description="sequences per device per step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    seed: int = Field(42, description="seed for weights init, data order and dropout")
    logging_steps: int = Field(10, ge=1, description="log loss and learning rate every N steps")
    save_steps: int = Field(500, ge=1, description="write a checkpoint every N steps")
    save_total_limit: int = Field(
        2, ge=2, description="checkpoints kept on disk (at least 2: the Trainer drops the older one before the "
        "newest is marked complete)"
    )
    eval_steps: int = Field(100, ge=1, description="eval loss every N steps when data.eval is set")
    anchor: Literal["none", "l2", "kl"] = Field(
        "none", description="a penalty toward the start model against forgetting: l2 = anchor_weight/2 times the "
        "squared distance of the trainable weights from their start values; kl = anchor_weight times the mean "
        "KL(start model || model) of the next-token distributions on the trained tokens (pretrain, sft, dpo)"
    )
    anchor_weight: float = Field(0.1, gt=0, description="weight of train.anchor's penalty")
    resume: str = Field(
        "never", description="auto = continue an interrupted run from its newest complete checkpoint; "
        "never = start fresh; or a checkpoint folder. Refused if a key the checkpoint fixes (learning rate, "
        "schedule, batches, data) changed"
    )


class LoraSection(Section):
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] = Field(
        [], description="module names to adapt (empty: the attention and MLP projections of the architecture)"
    )
    rank_pattern: dict[str, int] = Field(
        {}, description="another rank for the modules whose name matches (e.g. {embed_tokens: 64}); their alpha "
        "scales with it, so alpha / r stays the same"
    )
    trainable_tokens: list[str] = Field(
        [], description="tokens whose embedding rows train too (peft trainable tokens), e.g. chat-template markers "
        "such as <|im_end|> that a base model never saw"
    )


class FreezeSection(Section):
    trainable_layers: int = Field(2, ge=0, description="train only the last N transformer blocks")
    trainable_modules: list[str] = Field(
        [], description="also train modules whose name contains one of these (e.g. lm_head, embed_tokens)"
    )


class DistributedSection(Section):
    deepspeed: str | None = Field(
        None, description="DeepSpeed config: zero2, zero3 (shipped, in lmforge/launch/) or a JSON file; needs CUDA "
        "and pip install deepspeed"
    )
    fsdp: str | None = Field(
        None, description="FSDP config: fsdp (shipped) or a JSON file of fsdp_config keys; needs CUDA"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "DistributedSection":
        if self.deepspeed and self.fsdp:
            raise ValueError("set at most one of distributed.deepspeed or distributed.fsdp")
        return self


class RetentionSection(Section):
    retention_tasks: list[str] = Field(
        [], description="eval tasks (benchmark=PATH or task YAML) scored before and after training; "
        "the comparison goes into the model card"
    )
    limit: int = Field(0, ge=0, description="documents per retention task (0: all)")
    num_fewshot: int | None = Field(None, ge=0, description="in-context examples (None: each task's default)")
    threshold: float = Field(0.01, ge=0, description="smallest metric change reported as improved or regressed")


class PreferenceSection(Section):
    loss: Literal["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo", "kto"] = Field(
        "sigmoid", description="sigmoid = DPO, ipo, hinge, robust (noisy labels), simpo and orpo (no reference "
        "model), kto (unpaired good/bad examples; pairs are split into one of each)"
    )
    beta: float = Field(0.1, gt=0, description="strength of the preference term (for orpo, its weight lambda)")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="assumed share of flipped labels (sigmoid, robust, simpo)"
    )
    sft_weight: float | None = Field(
        None, ge=0, description="weight of the chosen answer's NLL added to the loss (default: 1 for orpo, else 0)"
    )
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO's target reward margin")
    desirable_weight: float = Field(1.0, gt=0, description="KTO weight of desirable examples")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO weight of undesirable examples")
    reference: Literal["auto", "copy", "adapter", "precomputed"] = Field(
        "auto", description="where reference log-probs come from: a frozen copy of the start model, the same model "
        "with its LoRA adapters switched off (no second copy), or one pass before training; auto = adapter under "
        "LoRA, else copy"
    )
    reference_path: str | None = Field(
        None, description="a model directory to use as the reference instead of the start model (reference: copy)"
    )


class RewardSpec(Section):
    name: str = Field(description="a built-in reward or your own as package.module:function or file.py:function")
    weight: float = Field(1.0, description="weight in the summed reward")
    options: dict = Field({}, description="keyword options of the reward function")


class GrpoSection(Section):
    group_size: int = Field(8, ge=2, description="completions sampled per prompt; advantages are group-relative")
    max_new_tokens: int = Field(64, ge=1, description="longest completion")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    top_k: int = Field(0, ge=0, description="sample from the k likeliest tokens (0: all)")
    beta: float = Field(0.04, ge=0, description="weight of the KL penalty to the reference model (0: none kept)")
    reference: Literal["auto", "copy", "adapter"] = Field(
        "auto", description="the KL reference: a frozen copy, or the model with its LoRA adapters off (auto)"
    )
    scale_rewards: bool = Field(True, description="divide advantages by the group's reward standard deviation")
    rewards: list[RewardSpec] = Field(
        [RewardSpec(name="exact_match")], description="reward functions, summed with their weights; built-ins: "
        "exact_match, format, length_penalty, repetition_penalty, reward_model"
    )

    @model_validator(mode="after")
    def _rewards_exist(self) -> "GrpoSection":
        """Unknown rewards and options fail when the recipe is read, not after the model has loaded."""
        from lmforge.rewards import resolve_reward

        if not self.rewards:
            raise ValueError("grpo.rewards is empty: name at least one reward function")
        for spec in self.rewards:
            resolve_reward(spec.name, spec.options)
        return self


class TrainRecipe(Section):
    stage: Literal["pretrain", "sft", "rm", "dpo", "grpo"] = Field(description="which training stage this recipe runs")
    name: str = Field(description="run name; output goes to <output_dir>/<name>/")
    output_dir: str = Field("runs", description="folder holding run folders")
    model: ModelConfig = Field(description="the model to train")
    data: DataConfig = Field(description="the training data")
    train: OptimConfig = Field(default_factory=OptimConfig, description="optimisation")
    finetuning: Literal["full", "lora", "dora", "qlora", "freeze"] = Field(
        "full", description="which parameters train: all, low-rank adapters (LoRA/DoRA, 4-bit base for QLoRA on "
        "CUDA), or the last blocks only"
    )
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA/DoRA/QLoRA adapters")
    freeze: FreezeSection = Field(default_factory=FreezeSection, description="partial fine-tuning")
    distributed: DistributedSection = Field(
        default_factory=DistributedSection, description="sharding across GPUs (plain DDP needs no setting)"
    )
    eval: RetentionSection = Field(default_factory=RetentionSection, description="forgetting check around training")
    dpo: PreferenceSection = Field(default_factory=PreferenceSection, description="the dpo stage's loss and reference")
    grpo: GrpoSection = Field(default_factory=GrpoSection, description="the grpo stage's sampling, rewards and KL")

    @model_validator(mode="after")
    def _adapters_need_a_base(self) -> "TrainRecipe":
        if self.finetuning in ADAPTER_METHODS and self.model.path is None:
            raise ValueError(
                f"finetuning: {self.finetuning} needs a pretrained model.path: adapters on a randomly initialised "
                "preset learn little; use finetuning: full to train from scratch"
            )
        return self

    @model_validator(mode="after")
    def _reference_exists(self) -> "TrainRecipe":
        for stage, reference in (("dpo", self.dpo.reference), ("grpo", self.grpo.reference)):
            if self.stage == stage and reference == "adapter" and self.finetuning not in ADAPTER_METHODS:
                raise ValueError(f"{stage}.reference: adapter needs LoRA adapters to switch off "
                                 f"(finetuning: lora, dora or qlora), not finetuning: {self.finetuning}")
        if self.dpo.reference_path and self.dpo.reference not in ("auto", "copy"):
            raise ValueError(f"dpo.reference_path is a model to copy as the reference: it needs dpo.reference "
                             f"auto or copy, not {self.dpo.reference}")
        if self.stage == "rm" and (self.finetuning == "qlora" or self.eval.retention_tasks):
            raise ValueError("stage rm trains a scoring head: qlora and eval.retention_tasks (language-model "
                             "evaluation) do not apply to it")
        if self.stage in ("rm", "dpo", "grpo") and self.model.path is None:
            raise ValueError(f"stage {self.stage} starts from a trained model: set model.path")
        if self.stage in ("rm", "dpo", "grpo") and self.data.packing:
            raise ValueError(f"stage {self.stage} scores whole answers: data.packing must stay off")
        return self

    @model_validator(mode="after")
    def _mitigations_fit_the_stage(self) -> "TrainRecipe":
        """Replay mixes plain language-model examples into the batches, which only pretrain and sft train on; the
        KL anchor compares next-token distributions, which rm (a score head) and grpo (sampled completions, with
        its own grpo.beta KL) do not train on."""
        if self.data.replay and self.stage not in ("pretrain", "sft"):
            raise ValueError(f"data.replay mixes language-model examples into pretrain and sft batches; stage "
                             f"{self.stage} trains on other rows: keep it near its start model with train.anchor "
                             "(kl or l2) instead")
        if self.train.anchor == "kl" and self.stage in ("rm", "grpo"):
            other = "grpo.beta (its KL to the reference)" if self.stage == "grpo" else "train.anchor: l2"
            raise ValueError(f"train.anchor: kl compares next-token distributions, which stage {self.stage} does not "
                             f"train; use {other}")
        if self.train.anchor == "l2" and (self.distributed.deepspeed or self.distributed.fsdp):
            raise ValueError("train.anchor: l2 compares each parameter with its start value, which sharded "
                             "parameters (distributed.deepspeed, distributed.fsdp) do not hold whole; use kl")
        return self

    @property
    def packing(self) -> bool:
        return self.data.packing if self.data.packing is not None else self.stage == "pretrain"

    @property
    def reference_source(self) -> str | None:
        """Where the dpo or grpo stage's reference log-probs come from, or None when its loss needs none."""
        from lmforge.losses import REFERENCE_FREE_LOSSES

        if self.stage == "dpo" and self.dpo.loss not in REFERENCE_FREE_LOSSES:
            chosen = self.dpo.reference
        elif self.stage == "grpo" and self.grpo.beta > 0:
            chosen = self.grpo.reference
        else:
            return None
        if chosen == "auto":
            own_reference = self.stage == "dpo" and self.dpo.reference_path
            return "adapter" if self.finetuning in ADAPTER_METHODS and not own_reference else "copy"
        return chosen
