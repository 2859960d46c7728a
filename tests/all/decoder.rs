//! Parity of tarjuma's own decoder engine with transformers and llama.cpp (issue 9), on
//! tiny random models that keep every structural option of Qwen2.5, Llama 3.2 and
//! Gemma 3 4B (`scripts/make-decoder-fixtures.py`, tests/fixtures/decoder). Each model
//! is read from the GGUF files llama.cpp's converter and quantizer wrote:
//! - f32: last-position logits within 1e-3 of both references, greedy ids equal to both
//!   for 64 steps (past Gemma's 16-token sliding window);
//! - a multi-token feed after a cached prefix, a forked prefix, a truncated cache and a
//!   batch of two sequences all equal a fresh run;
//! - Q4_K_M: within the distance llama.cpp itself shows between its f32 and Q4_K_M
//!   logits.
//!
//! `TARJUMA_TEST_DEVICE=cuda` runs them on a GPU (scripts/gpu-check.sh).

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;
use tarjuma::backend::decoder::{open, Decoder, Sequence};

use crate::util::{bin, floats, ids, max_diff, records, stderr};

const TOL: f32 = 1e-3;

fn dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/decoder")
        .join(arch)
}

fn device() -> Device {
    match std::env::var("TARJUMA_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("TARJUMA_TEST_DEVICE=cuda needs a GPU build"),
        _ => Device::Cpu,
    }
}

fn reference(arch: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(arch).join("reference.json")).unwrap())
        .unwrap()
}

fn argmax(l: &[f32]) -> u32 {
    l.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap()
}

fn greedy(m: &Decoder, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut s = Sequence::new();
    let mut l = m.forward_one(&mut s, prompt).unwrap();
    let mut out = vec![];
    for _ in 0..steps {
        let t = argmax(&l);
        out.push(t);
        l = m.forward_one(&mut s, &[t]).unwrap();
    }
    out
}

fn check_f32(arch: &str) {
    let r = reference(arch);
    let m = open(&dir(arch).join("model-f32.gguf"), &device()).unwrap();
    let prompt = ids(&r["prompt"]);
    let fresh = m.forward_one(&mut Sequence::new(), &prompt).unwrap();
    let hf = floats(&r["logits_transformers"]);
    let cpp = floats(&r["logits_llama_cpp_f32"]);
    let (d_hf, d_cpp) = (max_diff(&fresh, &hf), max_diff(&fresh, &cpp));
    // llama.cpp's GELU reads an f16 table, so on Gemma it is itself ~2e-3 from
    // transformers; against it we allow that distance plus the tolerance.
    let refs = max_diff(&hf, &cpp);
    eprintln!(
        "{arch} f32: max |ours - transformers| {d_hf:.2e}, |ours - llama.cpp| {d_cpp:.2e}, |transformers - llama.cpp| {refs:.2e}"
    );
    assert!(
        d_hf <= TOL,
        "{arch}: logits differ from transformers by {d_hf}"
    );
    assert!(
        d_cpp <= refs + TOL,
        "{arch}: logits differ from llama.cpp by {d_cpp}"
    );

    let want = ids(&r["greedy_transformers"]);
    assert_eq!(
        want,
        ids(&r["greedy_llama_cpp_f32"]),
        "the references agree"
    );
    assert_eq!(greedy(&m, &prompt, want.len()), want, "{arch}: greedy ids");

    // A multi-token feed after a cached prefix.
    let k = r["prefix_len"].as_u64().unwrap() as usize;
    let mut s = Sequence::new();
    m.forward_one(&mut s, &prompt[..k]).unwrap();
    let fed = m.forward_one(&mut s, &prompt[k..]).unwrap();
    assert!(max_diff(&fed, &fresh) <= 1e-4, "{arch}: prefix then feed");

    // A fork of the prefix, and a truncated cache, continue the same way.
    let mut prefix = Sequence::new();
    m.forward_one(&mut prefix, &prompt[..k]).unwrap();
    let mut fork = prefix.fork().unwrap();
    let forked = m.forward_one(&mut fork, &prompt[k..]).unwrap();
    assert!(max_diff(&forked, &fresh) <= 1e-4, "{arch}: forked prefix");
    m.forward_one(&mut prefix, &[1, 2, 3]).unwrap();
    prefix.truncate(k);
    let rewound = m.forward_one(&mut prefix, &prompt[k..]).unwrap();
    assert!(
        max_diff(&rewound, &fresh) <= 1e-4,
        "{arch}: truncated cache"
    );
    assert_eq!(prefix.len(), prompt.len());

    // Two sequences of different lengths in one forward pass.
    let (mut a, mut b) = (Sequence::new(), Sequence::new());
    let short = &prompt[..k];
    let alone = m.forward_one(&mut Sequence::new(), short).unwrap();
    let out = m.forward(&mut [&mut a, &mut b], &[&prompt, short]).unwrap();
    let (la, lb) = (
        out[0].to_vec1::<f32>().unwrap(),
        out[1].to_vec1::<f32>().unwrap(),
    );
    assert!(max_diff(&la, &fresh) <= 1e-4, "{arch}: batched, long");
    assert!(max_diff(&lb, &alone) <= 1e-4, "{arch}: batched, short");
    // ... and one decode step each, batched, equals the step alone.
    let (ta, tb) = (argmax(&la), argmax(&lb));
    let step = m.forward(&mut [&mut a, &mut b], &[&[ta], &[tb]]).unwrap();
    let mut solo = Sequence::new();
    m.forward_one(&mut solo, short).unwrap();
    let solo = m.forward_one(&mut solo, &[tb]).unwrap();
    assert!(max_diff(&step[1].to_vec1::<f32>().unwrap(), &solo) <= 1e-4);
}

fn check_quant(arch: &str) {
    let r = reference(arch);
    let m = open(&dir(arch).join("model-q4_k_m.gguf"), &device()).unwrap();
    let prompt = ids(&r["prompt"]);
    let ours = m.forward_one(&mut Sequence::new(), &prompt).unwrap();
    let cpp_f32 = floats(&r["logits_llama_cpp_f32"]);
    let cpp_q = floats(&r["logits_llama_cpp_q4_k_m"]);
    let llama_cpp_own = max_diff(&cpp_q, &cpp_f32);
    let d = max_diff(&ours, &cpp_f32);
    eprintln!(
        "{arch} Q4_K_M: max |ours - f32| {d:.3e}, llama.cpp's own |q - f32| {llama_cpp_own:.3e}, |ours - llama.cpp q| {:.3e}",
        max_diff(&ours, &cpp_q)
    );
    // k-quant dot products round activations to 8 bits per block, so float noise of
    // 1e-5 (llama.cpp's f16 GELU table, its f32 rope angles) can flip a rounding and
    // move these tiny, sensitive models' logits by a few percent of the quantization
    // error; hence the 5 % margin. Where no such noise exists (qwen2) ours equal
    // llama.cpp's to 1e-6.
    assert!(
        d <= 1.05 * llama_cpp_own,
        "{arch}: Q4_K_M logits are {d} from f32, llama.cpp's are {llama_cpp_own}"
    );
    let to_cpp = max_diff(&ours, &cpp_q);
    assert!(
        to_cpp <= 0.1 * llama_cpp_own,
        "{arch}: Q4_K_M logits are {to_cpp} from llama.cpp's own"
    );
    // Without that noise (no GELU table) our block kernels give llama.cpp's numbers.
    if arch != "gemma3" && device().is_cpu() {
        assert!(
            to_cpp < 1e-4,
            "{arch}: Q4_K_M logits are {to_cpp} from llama.cpp's"
        );
    }
}

#[test]
fn qwen2_parity_f32() {
    check_f32("qwen2");
}

#[test]
fn qwen2_parity_q4_k_m() {
    check_quant("qwen2");
}

#[test]
fn llama_parity_f32() {
    check_f32("llama");
}

#[test]
fn llama_parity_q4_k_m() {
    check_quant("llama");
}

#[test]
fn gemma3_parity_f32() {
    check_f32("gemma3");
}

#[test]
fn gemma3_parity_q4_k_m() {
    check_quant("gemma3");
}

/// `tarjuma generate --raw` prints what `llama-completion --temp 0` printed for the same
/// file and prompt (32 greedy tokens, text recorded by the fixture script).
#[test]
fn gemma3_parity_generate_raw_matches_llama_completion() {
    let r = reference("gemma3");
    let o = bin()
        .args(["generate", "--raw", "-n", "32", "--threads", "2", "--model"])
        .arg(dir("gemma3").join("model-f32.gguf"))
        .args(["--prompt", r["raw_prompt"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hex = r["llama_completion_hex"].as_str().unwrap();
    let want: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut got = o.stdout.clone();
    assert_eq!(
        got.pop(),
        Some(b'\n'),
        "generate ends its output with a newline"
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "32 greedy tokens, as llama-completion printed them"
    );
    assert_eq!(got, want);
}

/// An instruction model whose manifest says it translates (TranslateGemma's family and
/// input limit) runs as `--translator`: each chunk goes out as the fixed one-turn prompt,
/// the guards judge what comes back, the record names it as the translator, and no
/// "cannot translate Urdu" note is printed. The model is the tiny random gemma3
/// fixture, so its output is garbage that the guards must catch.
#[test]
fn gemma3_parity_fixture_runs_as_a_translategemma_translator() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("tiny-translategemma.toml"),
        format!(
            "name = \"tiny-translategemma\"\ndescription = \"test\"\narchitecture = \"gemma3\"\n\
             prompt_family = \"translategemma\"\ncontext_length = 4096\nlicense = \"none\"\n\
             quality = \"random weights\"\ntranslates_urdu = true\nmax_input_tokens = 2048\n\n\
             [source]\nkind = \"local\"\npath = \"{}\"\n\n[[files]]\nname = \"model-f32.gguf\"\n",
            dir("gemma3").display()
        ),
    )
    .unwrap();
    let input = tmp.path().join("short.ur.txt");
    std::fs::write(
        &input,
        "روس کے وزیر خارجہ نے کہا کہ مذاکرات اگلے ماہ جنیوا میں ہوں گے۔\n\nامریکہ نے کہا کہ وہ تیار ہے۔\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = bin()
        .env("TARJUMA_MODELS_DIR", &manifests)
        .args(["run", "--quiet", "--threads", "2", "--max-bullets", "1"])
        .args(["--translator", "tiny-translategemma", "--model"])
        .arg(dir("gemma3").join("model-f32.gguf"))
        .arg("--out")
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("not known to translate"),
        "{}",
        stderr(&o)
    );
    let rec = records(&out).remove(0);
    assert_eq!(rec["status"], "ok", "{rec}");
    assert_eq!(rec["translator"]["name"], "tiny-translategemma", "{rec}");
    let paras = rec["paragraphs"].as_array().unwrap();
    assert_eq!(paras.len(), 2);
    for p in paras {
        let t = p["translation"].as_str().unwrap();
        assert!(!t.trim().is_empty());
        assert!(!tarjuma::text::script::has_arabic_letters(t), "{t}");
    }
    assert!(
        paras
            .iter()
            .any(|p| !p["warnings"].as_array().unwrap().is_empty()),
        "the guards flag a random model's output: {rec}"
    );
}

fn random_ids(n: usize, vocab: u32, seed: u64) -> Vec<u32> {
    tarjuma::bench::tokens(n, vocab as usize, seed)
}

/// A prompt longer than one attention block (128 queries) fed at once equals the same
/// prompt fed in short pieces, which attend unblocked (issue 13's blocked attention).
fn check_blocked_attention(arch: &str) {
    let m = open(&dir(arch).join("model-f32.gguf"), &device()).unwrap();
    let prompt = random_ids(300, m.vocab() as u32, 5);
    let once = m.forward_one(&mut Sequence::new(), &prompt).unwrap();
    let mut s = Sequence::new();
    let mut pieces = vec![];
    for c in prompt.chunks(37) {
        pieces = m.forward_one(&mut s, c).unwrap();
    }
    let d = max_diff(&once, &pieces);
    assert!(d < 1e-4, "{arch}: 300 tokens at once vs in pieces: {d}");
    assert_eq!(argmax(&once), argmax(&pieces));
}

#[test]
fn qwen2_long_prompt_attends_in_blocks() {
    check_blocked_attention("qwen2");
}

#[test]
fn gemma3_long_prompt_attends_in_blocks() {
    // Sliding layers (window 16) and global layers both cross block edges.
    check_blocked_attention("gemma3");
}

/// Our block kernels against candle's `QMatMul` on the same Q4_K_M file: logits within
/// the noise of activation rounding, greedy ids identical, for a prompt, a batch of
/// two sequences (several input rows per product) and decoding (one row).
fn check_kernels_equal_plain(arch: &str) {
    if device().is_cuda() {
        return; // our kernels are CPU-only
    }
    let path = dir(arch).join("model-q4_k_m.gguf");
    let ours = tarjuma::backend::decoder::open_with(&path, &Device::Cpu, false).unwrap();
    let plain = tarjuma::backend::decoder::open_with(&path, &Device::Cpu, true).unwrap();
    let own = |k: &String| k.contains("avx2") || k.contains("candle-blocks");
    assert!(ours.kernels().iter().any(own), "{:?}", ours.kernels());
    assert!(!plain.kernels().iter().any(own), "{:?}", plain.kernels());
    let prompt = random_ids(150, ours.vocab() as u32, 9);
    let a = ours.forward_one(&mut Sequence::new(), &prompt).unwrap();
    let b = plain.forward_one(&mut Sequence::new(), &prompt).unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_diff(&a, &b);
    assert!(
        d < 0.02 * scale,
        "{arch}: ours vs plain {d} (logit scale {scale})"
    );
    // The fixture's prompt at once (packed tiles, 40 rows) and one token at a time
    // (one-row kernels) both stay within llama.cpp's own quantization distance of its
    // Q4_K_M logits; where both equal llama.cpp's (qwen2), greedy ids are identical.
    let r = reference(arch);
    let start = ids(&r["prompt"]);
    let cpp_q = floats(&r["logits_llama_cpp_q4_k_m"]);
    let own = max_diff(&cpp_q, &floats(&r["logits_llama_cpp_f32"]));
    let mut one_by_one = Sequence::new();
    let mut l = vec![];
    for &t in &start {
        l = ours.forward_one(&mut one_by_one, &[t]).unwrap();
    }
    let packed = ours.forward_one(&mut Sequence::new(), &start).unwrap();
    for (name, v) in [("one row", &l), ("packed", &packed)] {
        let d = max_diff(v, &cpp_q);
        assert!(
            d <= 0.1 * own,
            "{arch} {name}: {d} from llama.cpp's Q4_K_M logits"
        );
    }
    if arch == "qwen2" {
        let mut steps = vec![];
        for _ in 0..24 {
            let t = argmax(&l);
            steps.push(t);
            l = ours.forward_one(&mut one_by_one, &[t]).unwrap();
        }
        assert_eq!(greedy(&ours, &start, 24), steps);
        assert_eq!(greedy(&plain, &start, 24), steps);
    }
    // Two sequences in one pass, each equal to its own run.
    let (mut s1, mut s2) = (Sequence::new(), Sequence::new());
    let both = ours
        .forward(&mut [&mut s1, &mut s2], &[&prompt[..40], &prompt[40..90]])
        .unwrap();
    let alone = ours
        .forward_one(&mut Sequence::new(), &prompt[40..90])
        .unwrap();
    let both1: Vec<f32> = both[1].to_vec1().unwrap();
    assert!(max_diff(&both1, &alone) < 1e-4);
}

#[test]
fn qwen2_kernels_equal_the_plain_path() {
    check_kernels_equal_plain("qwen2");
}

#[test]
fn llama_kernels_equal_the_plain_path() {
    check_kernels_equal_plain("llama");
}

#[test]
fn gemma3_kernels_equal_the_plain_path() {
    check_kernels_equal_plain("gemma3");
}

/// `tarjuma bench` reports llama-bench's tests, the CPU and the kernels, as JSON and as
/// a table; bad counts are usage errors.
#[test]
fn bench_reports_tests_cpu_and_kernels() {
    let model = dir("qwen2").join("model-q4_k_m.gguf");
    let o = bin()
        .args([
            "bench", "-p", "40,130", "-n", "4", "-s", "1,3", "-r", "2", "--json", "-t", "2",
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["test"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pp40", "pp130", "tg4", "tg4x3"]);
    for t in r["tests"].as_array().unwrap() {
        assert!(t["avg_ts"].as_f64().unwrap() > 0.0, "{t}");
        assert_eq!(t["samples_ts"].as_array().unwrap().len(), 2);
    }
    assert_eq!(r["threads"], 2);
    assert!(!r["cpu"]["model"].as_str().unwrap().is_empty());
    assert!(r["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k.as_str().unwrap().starts_with("q4k: ")));
    assert!(r["load_s"].as_f64().unwrap() > 0.0);
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0);
    let o = bin()
        .args(["bench", "-p", "16", "-n", "2", "-r", "1", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = crate::util::stdout(&o);
    assert!(table.starts_with("cpu: "), "{table}");
    assert!(
        table.contains("| pp16 |") && table.contains("| tg2 |"),
        "{table}"
    );
    let o = bin()
        .args(["bench", "-r", "0", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--repetitions"), "{}", stderr(&o));
}
