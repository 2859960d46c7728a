//! Thin entry point: parse the CLI, resolve the configuration, run, map to an exit code.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use tarjuma::cli::{Cli, Command, ModelsCommand, TextArgs};
use tarjuma::config::{self, config_error, ConfigError, ModelConfig, TranslatorConfig};
use tarjuma::io::read::read_file;
use tarjuma::models;
use tarjuma::pipeline::job::{prepare, run_batch, summary_input, BatchConfig, Engines};
use tarjuma::text::script::arabic_letter_ratio;
use tarjuma::text::{Kind, Paragraph};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_exit(e),
    };
    let threads = match &cli.command {
        Command::Run(a) => a.model.threads,
        Command::Translate(a) | Command::Summarize(a) => a.model.threads,
        Command::Models(_) => None,
    };
    config::set_threads(threads);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARJUMA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tarjuma: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Help and version go to stdout with code 0; a usage error is one line on stderr, code 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            // clap's message up to its first blank line, folded into one line.
            let text = e.to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("tarjuma: {msg} (see `tarjuma --help`)");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(a) => {
            let max_bullets = config::validate_bullets(a.summary.max_bullets)?;
            let mc = ModelConfig::from_args(&a.model)?;
            let tc = TranslatorConfig::from_args(&a.translator, &a.model)?;
            // Check inputs before loading (and maybe fetching) the models.
            tarjuma::io::read::articles(&a.inputs).map_err(|e| config_error(e.to_string()))?;
            let nmt = tc.map(|t| t.load()).transpose()?;
            let mut engines = Engines {
                lm: Some(mc.load()?),
                nmt,
            };
            let cfg = BatchConfig {
                inputs: a.inputs,
                out: a.out.clone(),
                force: a.force,
                max_bullets,
                translate: mc.translate.clone(),
                progress: mc.progress,
            };
            let o = run_batch(&mut engines, &cfg)?;
            if !a.model.quiet {
                eprintln!(
                    "tarjuma: {} ok, {} failed, {} already done; results in {}",
                    o.ok,
                    o.failed,
                    o.skipped,
                    a.out.join("results.jsonl").display()
                );
            }
            Ok(if o.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Translate(a) => translate(a),
        Command::Summarize(a) => summarize(a),
        Command::Models(m) => models_cmd(m),
    }
}

fn read_input(input: &str) -> Result<String> {
    if input == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
        return Ok(s);
    }
    let p = std::path::Path::new(input);
    if !p.is_file() {
        return Err(config_error(format!("input `{input}` does not exist")));
    }
    read_file(p).map_err(|e| anyhow::anyhow!("{input}: {e}"))
}

/// What `translate` and `summarize` start from: the config, the text, its paragraphs
/// and the loaded models (loaded last, so input errors come first).
/// `summarizing`: the instruction model is needed, and the translator only for Urdu text.
fn open_text(
    a: &TextArgs,
    summarizing: bool,
) -> Result<(ModelConfig, String, Vec<Paragraph>, Engines)> {
    let mc = ModelConfig::from_args(&a.model)?;
    let tc = TranslatorConfig::from_args(&a.translator, &a.model)?;
    let text = read_input(&a.input)?;
    let paras = prepare(&text);
    if paras.is_empty() {
        anyhow::bail!("{}: the text is empty", a.input);
    }
    let lm = if summarizing || tc.is_none() {
        Some(mc.load()?)
    } else {
        None
    };
    let tc = tc.filter(|_| !summarizing || is_urdu(&text));
    let nmt = tc.map(|t| t.load()).transpose()?;
    Ok((mc, text, paras, Engines { lm, nmt }))
}

/// Whether `summarize` treats a text as Urdu (translated first) rather than English.
fn is_urdu(text: &str) -> bool {
    arabic_letter_ratio(text) > 0.3
}

fn translate(a: TextArgs) -> Result<ExitCode> {
    let (mc, _, paras, mut engines) = open_text(&a, false)?;
    let stdout = std::io::stdout();
    let mut io_err: Option<std::io::Error> = None;
    let (outs, _) = engines.translate(&paras, &mc.translate, &mut |c| {
        if io_err.is_some() {
            return;
        }
        let mut out = stdout.lock();
        let sep = if c.last_in_paragraph { "\n\n" } else { " " };
        if let Err(e) = write!(out, "{}{sep}", c.translation).and_then(|_| out.flush()) {
            io_err = Some(e);
        }
    })?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    if !a.model.quiet {
        for (i, p) in outs
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.warnings.is_empty())
        {
            eprintln!("tarjuma: paragraph {}: warnings {:?}", i + 1, p.warnings);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summarize(a: TextArgs) -> Result<ExitCode> {
    let max_bullets = config::validate_bullets(a.summary.max_bullets)?;
    let (mc, text, paras, mut engines) = open_text(&a, true)?;
    let (body, reserve) = if is_urdu(&text) {
        let (outs, _) = engines.translate(&paras, &mc.translate, &mut |_| {})?;
        summary_input(&outs)
    } else {
        let body = paras.iter().filter(|p| p.kind == Kind::Body);
        (body.map(|p| p.text.clone()).collect(), Vec::new())
    };
    let (s, _) = engines
        .lm()?
        .summarize(&body, &reserve, &text, max_bullets)?;
    let mut out = std::io::stdout().lock();
    for b in &s.bullets {
        writeln!(out, "- {b}")?;
    }
    if !s.warnings.is_empty() && !a.model.quiet {
        eprintln!("tarjuma: summary warnings {:?}", s.warnings);
    }
    Ok(ExitCode::SUCCESS)
}

fn models_cmd(m: ModelsCommand) -> Result<ExitCode> {
    match m {
        ModelsCommand::List { cache } => {
            let c = config::cache(&cache, true);
            let all = models::all().map_err(|e| config_error(format!("{e:#}")))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "cache: {}", c.root.display())?;
            for m in all {
                let default = if m.name == models::manifest::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                let state = if c.is_cached(&m) {
                    "cached"
                } else {
                    "not cached"
                };
                writeln!(
                    out,
                    "{:<30} {:<7} {:>7.0} MB  {:<10} {}{default}",
                    m.name,
                    m.architecture,
                    m.total_size() as f64 / 1e6,
                    state,
                    m.description
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Fetch { name, cache, quiet } => {
            let m = config::manifest(&name)?;
            let mut c = config::cache(&cache, quiet);
            c.offline = false;
            for f in c.ensure(&m)? {
                println!("{} {}", f.sha256, f.path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify {
            name,
            repair,
            cache,
            quiet,
        } => {
            let c = config::cache(&cache, quiet);
            let list = match name {
                Some(n) => vec![config::manifest(&n)?],
                None => models::all()?
                    .into_iter()
                    .filter(|m| {
                        m.files
                            .iter()
                            .any(|f| c.locate(m, f).is_some_and(|p| p.exists()))
                    })
                    .collect(),
            };
            let mut bad = 0;
            for m in list {
                match c.verify(&m, repair) {
                    Ok(files) => {
                        for f in files {
                            println!("ok       {} {} {}", m.name, f.sha256, f.path.display());
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        println!("CORRUPT  {} {e:#}", m.name);
                    }
                }
            }
            Ok(if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ModelsCommand::Path { name, cache } => {
            let m = config::manifest(&name)?;
            let c = config::cache(&cache, true);
            match c.locate(&m, m.main_file()).filter(|p| p.exists()) {
                Some(p) => {
                    println!("{}", p.display());
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    anyhow::bail!("model `{name}` is not cached; run `tarjuma models fetch {name}`")
                }
            }
        }
    }
}
