#!/usr/bin/env python3
"""Build the decoder parity fixtures (tests/all/decoder.rs, issue 9).

For each architecture tarjuma's own engine runs (qwen2, llama, gemma3) this makes a tiny
random model that keeps every structural option of the real configuration users run:

  qwen2   Qwen2.5: q/k/v biases, tied embeddings, rope base 1e6.
  llama   Llama 3.2: llama3 rope scaling (factor 32, low 1, high 4, original 8192),
          rope base 5e5, grouped KV heads, tied embeddings.
  gemma3  Gemma 3 4B: sliding window 16 with pattern 6 (layers 0-4 and 6 local, 5
          global), local rope base 1e4, global base 1e6 with linear factor 8, QK-norm,
          sandwich norms, scaled embeddings, tied embeddings, its own SentencePiece
          tokenizer.

Each is converted to GGUF twice by llama.cpp's own converter (f32) and quantizer
(Q4_K_M; rows of 64 fall back to Q5_0 as llama.cpp decides), then the reference is
recorded:
  - transformers (float32, eager attention): last-position logits of a 40-token prompt
    (longer than the window), and 64 greedy steps after it;
  - llama.cpp through llama-cpp-python (f32 and Q4_K_M files): the same logits, and the
    f32 greedy ids;
  - `llama-completion --temp 0` on the gemma3 f32 file: the text of 32 greedy tokens
    after a raw prompt (for `tarjuma generate --raw`).

Weights are random values on a 1/256 grid: exact in f32, and compressible, so the
committed f32 files cost little in git.

Setup (outside the repo; about 15 minutes, once):
  python3 -m venv /tmp/refenv
  /tmp/refenv/bin/pip install torch transformers sentencepiece safetensors numpy cmake ninja protobuf
  python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python   # the sdist
  tar xzf llama_cpp_python-*.tar.gz; cd llama_cpp_python-*/vendor/llama.cpp
  cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  cmake --build build -j2 --target llama-completion llama-quantize llama-bench llama

usage: /tmp/refenv/bin/python scripts/make-decoder-fixtures.py LLAMA_CPP_PYTHON_SDIST_DIR [OUT_DIR]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SDIST = Path(sys.argv[1]).resolve()
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/decoder").resolve()
LLAMA_CPP = SDIST / "vendor" / "llama.cpp"
BIN = LLAMA_CPP / "build" / "bin"
os.environ["LLAMA_CPP_LIB_PATH"] = str(BIN)
sys.path.insert(0, str(LLAMA_CPP / "gguf-py"))
sys.path.insert(0, str(LLAMA_CPP))
sys.path.insert(0, str(SDIST))

from llama_cpp import Llama, __version__ as llama_cpp_version  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

REPO = Path(__file__).resolve().parent.parent
PROMPT_LEN = 40
PREFIX_LEN = 24
STEPS = 64
# Rows of 256 let the k-quants apply (q, k, v, gate, up; o too where heads fill 256);
# rows of 64 (down, Gemma's o) take llama.cpp's fallback type. Qwen2 and Llama GGUFs
# carry no head size (it is hidden / heads), Gemma 3's does (Gemma 3 4B: 2560 / 8 != 256).
SIZES = dict(hidden_size=256, intermediate_size=64, num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6)
GEMMA_SIZES = dict(SIZES, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
RAW_PROMPT = "The minister said that the talks in Geneva"

# Text the tiny tokenizers are trained on: the project's examples (Urdu) and English.
CORPUS = [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples").glob("*.txt"))]
CORPUS += [
    "The minister said that the talks in Geneva will start next month. " * 3,
    "Russia's foreign minister said on Monday that 14,000 people had died since 2014.",
    "Floods in Karachi: the city received 120 mm of rain, officials said.",
]


def grid(t: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Random values on a 1/256 grid (exact in f32, few distinct bit patterns)."""
    return torch.round(torch.randn(t.shape, generator=gen) * std * 256) / 256


def randomize(model: torch.nn.Module, seed: int, norm_center: float, embed_std: float) -> None:
    """Weights large enough that greedy output varies and its top two logits stay apart."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.norm.weight" and embed_std < 0.1:
                # Small tied embeddings make small logits: the final norm restores them.
                p.copy_(30.0 + grid(p, 1.0, gen))
            elif p.dim() == 1 and "norm" in name:
                p.copy_(norm_center + grid(p, 0.1, gen))
            elif p.dim() == 1:
                p.copy_(grid(p, 0.05, gen))
            elif "embed_tokens" in name:
                p.copy_(grid(p, embed_std, gen))
            else:
                p.copy_(grid(p, 0.15, gen))


def bpe_tokenizer(dirname: Path, specials: list[str], bos: str, eos: str) -> int:
    """A byte-level BPE tokenizer (tokenizer.json) trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    fast.save_pretrained(dirname)
    return tok.get_vocab_size()


def spm_tokenizer(dirname: Path) -> int:
    """A Gemma-style SentencePiece BPE model (pad 0, eos 1, bos 2, unk 3, byte fallback)."""
    import sentencepiece as spm
    from transformers import GemmaTokenizer

    model = dirname / "tokenizer.model"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line for text in CORPUS for line in text.splitlines() if line.strip()),
        model_prefix=str(model.with_suffix("")), vocab_size=512, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, split_digits=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        num_threads=1, minloglevel=2,
    )
    tok = GemmaTokenizer(vocab_file=str(model), add_bos_token=True, add_eos_token=False)
    tok.save_pretrained(dirname)
    return spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()


def build(arch: str, hf: Path) -> torch.nn.Module:
    if arch == "qwen2":
        vocab = bpe_tokenizer(hf, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              "<|endoftext|>", "<|endoftext|>")
        cfg = Qwen2Config(vocab_size=vocab, num_hidden_layers=2, tie_word_embeddings=True,
                          max_position_embeddings=4096,
                          rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                          bos_token_id=0, eos_token_id=0, **SIZES)
        model, center = Qwen2ForCausalLM(cfg), 1.0
    elif arch == "llama":
        vocab = bpe_tokenizer(hf, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                   "<|end_header_id|>", "<|eot_id|>"],
                              "<|begin_of_text|>", "<|eot_id|>")
        cfg = LlamaConfig(vocab_size=vocab, num_hidden_layers=2, tie_word_embeddings=True,
                          max_position_embeddings=131072,
                          rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                           "factor": 32.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 8192},
                          bos_token_id=0, eos_token_id=4, **SIZES)
        model, center = LlamaForCausalLM(cfg), 1.0
    else:
        vocab = spm_tokenizer(hf)
        cfg = Gemma3TextConfig(vocab_size=vocab, num_hidden_layers=7, sliding_window=16,
                               sliding_window_pattern=6, max_position_embeddings=131072,
                               query_pre_attn_scalar=GEMMA_SIZES["head_dim"],
                               rope_parameters={
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                   "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                      "rope_theta": 1000000.0}},
                               final_logit_softcapping=None, attn_logit_softcapping=None,
                               pad_token_id=0, eos_token_id=1, bos_token_id=2,
                               hidden_activation="gelu_pytorch_tanh", **GEMMA_SIZES)
        model, center = Gemma3ForCausalLM(cfg), 0.0
        assert model.config.layer_types[5] == "full_attention"
        assert all(t == "sliding_attention" for i, t in enumerate(model.config.layer_types) if i != 5)
    model.config._attn_implementation = "eager"
    # Gemma scales embeddings by sqrt(hidden) = 16: smaller ones keep the token itself
    # from dominating every logit (greedy would repeat it forever).
    randomize(model, seed={"qwen2": 1, "llama": 2, "gemma3": 4}[arch], norm_center=center,
              embed_std=0.005 if arch == "gemma3" else 0.15)
    model.eval()
    model.save_pretrained(hf, safe_serialization=True)
    return model


def convert(hf: Path, out: Path, arch: str) -> None:
    """llama.cpp's converter, run in-process. The tiny BPE vocabularies have no known
    pre-tokenizer hash, so the converter is told which pre-tokenizer they follow."""
    code = f"""
import sys
sys.path.insert(0, {str(LLAMA_CPP / 'gguf-py')!r}); sys.path.insert(0, {str(LLAMA_CPP)!r})
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {('qwen2' if arch == 'qwen2' else 'llama-bpe')!r}
import convert_hf_to_gguf as conv
sys.argv = ['convert', {str(hf)!r}, '--outfile', {str(out)!r}, '--outtype', 'f32']
conv.main()
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def llama_logits(gguf: Path, prompt: list[int], steps: int) -> tuple[list[float], list[int]]:
    # f32 KV cache and no flash attention: llama.cpp's defaults (f16 cache) alone move
    # these logits by ~1e-2, more than the tolerance under test.
    llm = Llama(model_path=str(gguf), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True,
                verbose=False, n_threads=2, seed=0, type_k=0, type_v=0, flash_attn=False)
    llm.reset()
    llm.eval(prompt)
    last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    ids, cur = [], last
    for _ in range(steps):
        t = int(np.argmax(cur))
        ids.append(t)
        llm.eval([t])
        cur = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    return last.tolist(), ids


def hf_reference(model, prompt: list[int]) -> tuple[list[float], list[int], float]:
    with torch.no_grad():
        x = torch.tensor([prompt])
        logits = model(x).logits[0, -1].double()
        ids, gaps, seq = [], [], list(prompt)
        for _ in range(STEPS):
            l = model(torch.tensor([seq])).logits[0, -1].double()
            top = torch.topk(l, 2).values
            gaps.append(float(top[0] - top[1]))
            t = int(torch.argmax(l))
            ids.append(t)
            seq.append(t)
    return logits.tolist(), ids, min(gaps)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    completion = BIN / "llama-completion"
    quantize = BIN / "llama-quantize"
    for arch in ["qwen2", "llama", "gemma3"]:
        d = OUT / arch
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            hf = Path(tmp) / "hf"
            hf.mkdir()
            model = build(arch, hf)
            f32, q4 = d / "model-f32.gguf", d / "model-q4_k_m.gguf"
            convert(hf, f32, arch)
            subprocess.run([str(quantize), str(f32), str(q4), "Q4_K_M"], check=True,
                           capture_output=True)
        vocab = model.config.vocab_size
        # A prompt whose greedy run never has two logits within 2e-3 of each other at
        # the top, so float rounding cannot decide a step. Ids avoid the control
        # tokens at the start of each vocabulary.
        rng = np.random.default_rng({"qwen2": 11, "llama": 12, "gemma3": 13}[arch])
        while True:
            prompt = [int(x) for x in rng.integers(8, vocab, PROMPT_LEN)]
            hf_logits, hf_ids, min_gap = hf_reference(model, prompt)
            if min_gap >= 2e-3:
                break
        cpp_logits, cpp_ids = llama_logits(f32, prompt, STEPS)
        q_logits, _ = llama_logits(q4, prompt, 0)
        cpp = np.array(cpp_logits)
        ref = {
            "architecture": arch,
            "reference": f"transformers {transformers.__version__} (float32, eager), "
                         f"llama.cpp via llama-cpp-python {llama_cpp_version}",
            "prompt": prompt,
            "prefix_len": PREFIX_LEN,
            "logits_transformers": hf_logits,
            "logits_llama_cpp_f32": cpp_logits,
            "logits_llama_cpp_q4_k_m": q_logits,
            "greedy_transformers": hf_ids,
            "greedy_llama_cpp_f32": cpp_ids,
            "min_greedy_gap": min_gap,
            "max_diff_transformers_llama_cpp_f32": float(np.max(np.abs(np.array(hf_logits) - cpp))),
            "max_diff_llama_cpp_q4_k_m_f32": float(np.max(np.abs(np.array(q_logits) - cpp))),
        }
        if arch == "gemma3":
            out = subprocess.run([str(completion), "-m", str(f32), "-p", RAW_PROMPT, "-n", "32",
                                  "--temp", "0", "--seed", "1", "-no-cnv", "--no-display-prompt",
                                  "--no-warmup", "-t", "2", "-c", "256", "-ctk", "f32", "-ctv", "f32",
                                  "-fa", "off"],
                                 check=True, capture_output=True)
            ref["raw_prompt"] = RAW_PROMPT
            # Raw bytes: a random model's byte-fallback tokens need not form UTF-8. The
            # "\n\n" llama-completion prints after the generation is not part of it.
            text = out.stdout.removesuffix(b"\n\n")
            ref["llama_completion_hex"] = text.hex()
        (d / "reference.json").write_text(json.dumps(ref) + "\n", encoding="utf-8")
        print(arch, "vocab", vocab, "hf~cpp", ref["max_diff_transformers_llama_cpp_f32"],
              "q4~f32", ref["max_diff_llama_cpp_q4_k_m_f32"], "min gap", min_gap,
              "greedy equal", hf_ids == cpp_ids)


if __name__ == "__main__":
    main()
