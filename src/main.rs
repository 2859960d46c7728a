//! Thin entry point: parse the CLI, resolve the configuration, run, map to an exit code.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use tarjuma::cli::{
    BenchArgs, Cli, Command, EvalArgs, GenerateArgs, MergeArgs, ModelsCommand, NonUrduArg,
    ReportArgs, RunArgs, ScoreArgs, SummarizeArgs, TextArgs,
};
use tarjuma::config::{self, config_error, ConfigError, ModelConfig, TranslatorConfig};
use tarjuma::eval::facts::FactSheet;
use tarjuma::eval::runs::Run;
use tarjuma::eval::score::{score, signatures, FactsIn, Hyp, Ref};
use tarjuma::eval::Scores;
use tarjuma::io::read::read_file;
use tarjuma::models;
use tarjuma::pipeline::batch::{run_batch, BatchConfig, NonUrdu, ProgressMode};
use tarjuma::pipeline::job::{prepare, summary_gap, summary_input, Engines};
use tarjuma::pipeline::merge::merge;
use tarjuma::pipeline::shard::Shard;
use tarjuma::pipeline::summarize::SumPara;
use tarjuma::text::script::arabic_letter_ratio;
use tarjuma::text::Paragraph;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_exit(e),
    };
    let threads = match &cli.command {
        Command::Run(a) => a.model.threads,
        Command::Translate(a) => a.model.threads,
        Command::Summarize(a) => a.text.model.threads,
        Command::Generate(a) => a.model.threads,
        Command::Bench(a) => a.model.threads,
        Command::Models(_) | Command::Eval(_) | Command::Report(_) | Command::Merge(_) => None,
    };
    config::set_threads(threads);
    tarjuma::backend::tune_allocator();
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
            eprintln!("tarjuma: {}", tarjuma::pipeline::one_line(&e));
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
        Command::Run(a) => run_cmd(a),
        Command::Translate(a) => translate(a),
        Command::Summarize(a) => summarize(a),
        Command::Models(m) => models_cmd(m),
        Command::Eval(a) => eval_cmd(a),
        Command::Merge(a) => merge_cmd(a),
        Command::Report(a) => report_cmd(a),
        Command::Generate(a) => generate_cmd(a),
        Command::Bench(a) => bench_cmd(a),
    }
}

/// `tarjuma bench`: llama-bench's tests on our engine.
fn bench_cmd(a: BenchArgs) -> Result<ExitCode> {
    use tarjuma::bench;
    if a.repetitions == 0 {
        return Err(config_error("--repetitions must be at least 1"));
    }
    if a.sequences.contains(&0) {
        return Err(config_error("--sequences must be at least 1"));
    }
    let mc = ModelConfig::from_args(&a.model)?;
    let (name, path) = mc.file()?;
    let device =
        tarjuma::backend::parse_device(&mc.device).map_err(|e| config_error(e.to_string()))?;
    let plan = bench::Plan {
        prompt_tokens: a.prompt_tokens.clone(),
        gen_tokens: a.gen_tokens,
        sequences: a.sequences.clone(),
        repetitions: a.repetitions,
    };
    let cpu = bench::Cpu::detect();
    if !a.json {
        println!(
            "cpu: {}, {} threads",
            cpu.line(),
            candle_core::utils::get_num_threads()
        );
        println!("| model | test | tokens/s |");
        println!("|---|---|---|");
    }
    let json = a.json;
    let r = bench::run(&name, &path, &device, &plan, |t| {
        if !json {
            println!(
                "| {name} | {} | {:.2} ± {:.2} |",
                t.test, t.avg_ts, t.stddev_ts
            );
        }
    })
    .map_err(|e| anyhow::anyhow!("model `{name}`: {}", tarjuma::pipeline::one_line(&e)))?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "load {:.2} s; peak RSS {:.0} MiB ({:.2}× the {:.0} MiB file); kernels: {}",
            r.load_s,
            r.peak_rss_bytes as f64 / 1048576.0,
            r.peak_rss_bytes as f64 / r.file_bytes.max(1) as f64,
            r.file_bytes as f64 / 1048576.0,
            r.kernels.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tarjuma generate`: one prompt, one completion on stdout.
fn generate_cmd(a: GenerateArgs) -> Result<ExitCode> {
    use tarjuma::generate::{DecodeOptions, Session};
    use tarjuma::prompt::{Message, Role};
    let text = match (&a.prompt, &a.prompt_file) {
        (Some(t), None) => t.clone(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t)?;
            t
        }
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| config_error(format!("--prompt-file `{}`: {e}", p.display())))?,
        _ => return Err(config_error("give --prompt TEXT or --prompt-file FILE")),
    };
    let mc = ModelConfig::from_args(&a.model)?;
    let mut lm = mc.load()?;
    let tok = &lm.loaded.tokenizer;
    let ids = if a.raw {
        let mut ids: Vec<u32> = Vec::new();
        if tok.add_bos {
            ids.extend(tok.bos);
        }
        ids.extend(tok.encode(&text)?);
        ids
    } else {
        lm.render(&[Message::new(Role::User, text)], "")?
    };
    anyhow::ensure!(!ids.is_empty(), "the prompt is empty");
    let o = DecodeOptions {
        max_new: a.max_tokens,
        temperature: lm.sampling.temperature,
        top_p: lm.sampling.top_p,
        seed: lm.sampling.seed,
        stop_ids: lm.family.stop_ids(tok),
        loop_guard: false,
        ..Default::default()
    };
    let model = lm.name.clone();
    let loaded = &mut lm.loaded;
    let t0 = std::time::Instant::now();
    let mut s = Session::new(&mut loaded.lm, &ids).map_err(|e| {
        anyhow::anyhow!(
            "model `{model}`: reading a prompt of {} tokens: {}",
            ids.len(),
            tarjuma::pipeline::one_line(&e)
        )
    })?;
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let out = s.generate(&loaded.tokenizer, &o).map_err(|e| {
        anyhow::anyhow!(
            "model `{model}`: generating: {}",
            tarjuma::pipeline::one_line(&e)
        )
    })?;
    let tok = &loaded.tokenizer;
    let decode = t1.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    // The bytes as generated, as llama.cpp prints them.
    stdout.write_all(&tok.decode_bytes(&out.ids))?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    if a.timing {
        eprintln!(
            "{model}: prompt {} tokens in {prefill:.3} s ({:.1} tok/s); generated {} tokens in {decode:.3} s ({:.1} tok/s); stop: {:?}",
            ids.len(),
            ids.len() as f64 / prefill,
            out.ids.len(),
            out.ids.len() as f64 / decode.max(1e-9),
            out.stop
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The reference and fact sheet of `eval` and `report` (usage errors when unreadable).
fn score_inputs(a: &ScoreArgs) -> Result<(Option<Ref>, Option<FactSheet>, FactsIn)> {
    let reference = match &a.reference {
        Some(p) if !p.is_file() => {
            return Err(config_error(format!(
                "--ref `{}` does not exist",
                p.display()
            )))
        }
        Some(p) => Some(Ref::load(p).map_err(|e| config_error(format!("{e:#}")))?),
        None => None,
    };
    let facts = match &a.facts {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| config_error(format!("--facts `{}`: {e}", p.display())))?;
            let name = p.display().to_string();
            Some(FactSheet::parse(&text, &name).map_err(|e| config_error(format!("{e:#}")))?)
        }
        None => None,
    };
    let on = match a.facts_in {
        tarjuma::cli::FactsIn::Summary => FactsIn::Summary,
        tarjuma::cli::FactsIn::Translation => FactsIn::Translation,
    };
    Ok((reference, facts, on))
}

fn eval_cmd(a: EvalArgs) -> Result<ExitCode> {
    if a.score.reference.is_none() && a.score.facts.is_none() {
        return Err(config_error("eval needs --ref REF, --facts FILE or both"));
    }
    if !a.hyp.exists() {
        return Err(config_error(format!(
            "--hyp `{}` does not exist",
            a.hyp.display()
        )));
    }
    let (reference, facts, on) = score_inputs(&a.score)?;
    let hyp = Hyp::load(&a.hyp).map_err(|e| config_error(format!("{e:#}")))?;
    let s = score(&hyp, reference.as_ref(), facts.as_ref(), on)
        .map_err(|e| config_error(format!("{e:#}")))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["signature"] = signatures();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    write!(out, "{}", eval_table(&s))?;
    Ok(ExitCode::SUCCESS)
}

/// The human-readable form of `eval`'s scores.
fn eval_table(s: &Scores) -> String {
    let mut t = String::new();
    let row = |t: &mut String, name: &str, v: Option<f64>, prec: usize, n: String| {
        if let Some(v) = v {
            t.push_str(&format!("{name:<10} {v:>9.prec$}  {n}\n"));
        }
    };
    let segs = format!("{} segments", s.segments);
    row(&mut t, "BLEU", s.bleu, 2, segs.clone());
    row(&mut t, "chrF", s.chrf, 2, segs.clone());
    row(&mut t, "chrF++", s.chrf_pp, 2, segs);
    let sums = format!("{} summaries", s.summaries);
    row(&mut t, "ROUGE-1", s.rouge1, 4, sums.clone());
    row(&mut t, "ROUGE-2", s.rouge2, 4, sums.clone());
    row(&mut t, "ROUGE-L", s.rouge_l, 4, sums);
    if let Some(f) = &s.facts {
        let recall = f.recall.map_or("–".into(), |r| format!("{r:.4}"));
        t.push_str(&format!(
            "{:<10} {recall:>9}  {}/{} facts, {} traps hit\n",
            "recall", f.found, f.total, f.traps_hit
        ));
        for a in &f.articles {
            if a.missed.is_empty() && a.traps_hit.is_empty() {
                continue;
            }
            let r = a.recall.map_or("–".into(), |r| format!("{r:.2}"));
            t.push_str(&format!("  {} (recall {r})", a.id));
            if !a.missed.is_empty() {
                t.push_str(&format!(": missed {}", a.missed.join(", ")));
            }
            if !a.traps_hit.is_empty() {
                t.push_str(&format!("; traps hit {}", a.traps_hit.join(", ")));
            }
            t.push('\n');
        }
    }
    if s.bleu.is_some() || s.rouge1.is_some() {
        t.push_str("signatures:\n");
        if s.bleu.is_some() {
            t.push_str(&format!("  BLEU    {}\n", tarjuma::eval::bleu::SIGNATURE));
            t.push_str(&format!(
                "  chrF    {}\n",
                tarjuma::eval::chrf::signature(0)
            ));
            t.push_str(&format!(
                "  chrF++  {}\n",
                tarjuma::eval::chrf::signature(2)
            ));
        }
        if s.rouge1.is_some() {
            t.push_str(&format!("  ROUGE   {}\n", tarjuma::eval::rouge::SIGNATURE));
        }
    }
    t
}

fn report_cmd(a: ReportArgs) -> Result<ExitCode> {
    let (reference, facts, on) = score_inputs(&a.score)?;
    let mut runs = Vec::new();
    let mut scores = Vec::new();
    for dir in &a.runs {
        if !dir.exists() {
            return Err(config_error(format!(
                "run `{}` does not exist",
                dir.display()
            )));
        }
        let run = Run::load(dir).map_err(|e| config_error(format!("{e:#}")))?;
        let hyp = Hyp::Run(run);
        let s = if reference.is_some() || facts.is_some() {
            score(&hyp, reference.as_ref(), facts.as_ref(), on)
                .map_err(|e| config_error(format!("{}: {e:#}", dir.display())))?
        } else {
            Scores::default()
        };
        let Hyp::Run(run) = hyp else { unreachable!() };
        runs.push(run);
        scores.push(s);
    }
    let html = tarjuma::eval::report::render(&runs, &scores, &a.title);
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    tarjuma::io::write::write_atomic(&a.out, &html)?;
    eprintln!("tarjuma: wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn run_cmd(a: RunArgs) -> Result<ExitCode> {
    let max_bullets = config::validate_bullets(a.summary.max_bullets)?;
    let shard = Shard::resolve(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())
        .map_err(config_error)?;
    let mc = ModelConfig::from_args(&a.model)?;
    let tc = TranslatorConfig::from_args(&a.translator, &a.model)?;
    // Check inputs before loading (and maybe fetching) the models.
    tarjuma::io::read::articles(&a.inputs).map_err(|e| config_error(e.to_string()))?;
    if let Some((s, from)) = shard {
        if !a.model.quiet {
            eprintln!("tarjuma: shard {s} (from {from})");
        }
    }
    let shard = shard.map(|(s, _)| s);
    let settings = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "inputs": a.inputs,
        "out": a.out,
        "model": a.model.model,
        "translator": a.translator.translator,
        "quantize": a.translator.quantize,
        "beams": a.translator.beams,
        "max_bullets": max_bullets,
        "non_urdu": format!("{:?}", a.non_urdu).to_lowercase(),
        "force": a.force,
        "resummarize": a.resummarize,
        "prompts": a.model.prompts,
        "device": a.model.device,
        "threads": a.model.threads,
        "temperature": a.model.temperature,
        "seed": a.model.seed,
        "context": a.model.context,
        "chunk_tokens": a.model.chunk_tokens,
        "parallel": a.parallel,
    });
    let tlm = config::llm_translator(&a.translator, &a.model)?;
    if let Some(w) = config::translation_warning(&a.model, &a.translator) {
        eprintln!("{w}");
    }
    let nmt = tc.map(|t| t.load()).transpose()?;
    let tlm = tlm.map(|t| t.load()).transpose()?;
    let mut engines = Engines {
        lm: Some(mc.load()?),
        nmt,
        tlm,
    };
    let progress = if a.model.quiet {
        ProgressMode::Off
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else if a.progress_every == 0 {
        ProgressMode::Off
    } else {
        ProgressMode::Lines(Duration::from_secs(a.progress_every))
    };
    let cfg = BatchConfig {
        inputs: a.inputs,
        out: a.out.clone(),
        force: a.force,
        max_bullets,
        translate: mc.translate.clone(),
        progress,
        shard,
        non_urdu: match a.non_urdu {
            NonUrduArg::Error => NonUrdu::Error,
            NonUrduArg::Pass => NonUrdu::Pass,
        },
        grace: Duration::from_secs(a.grace_period),
        resummarize: a.resummarize,
        settings,
        parallel: a.parallel as usize,
    };
    let o = run_batch(&mut engines, &cfg)?;
    if !a.model.quiet {
        let others = if o.other_shards > 0 {
            format!(", {} left to other shards", o.other_shards)
        } else {
            String::new()
        };
        let unsummarized = if o.summary_failed > 0 {
            format!(
                " ({} without a summary: rerun with --resummarize)",
                o.summary_failed
            )
        } else {
            String::new()
        };
        eprintln!(
            "tarjuma: {} ok{unsummarized}, {} failed, {} already done{others}; results in {}",
            o.ok,
            o.failed,
            o.skipped,
            a.out.join("results.jsonl").display()
        );
    }
    if let Some(sig) = o.signal {
        if !a.model.quiet {
            eprintln!(
                "tarjuma: stopped by a signal; rerun the same command to resume ({})",
                a.out.join("run.json").display()
            );
        }
        return Ok(ExitCode::from((128 + sig) as u8));
    }
    Ok(if o.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn merge_cmd(a: MergeArgs) -> Result<ExitCode> {
    for d in &a.dirs {
        if !d.is_dir() {
            return Err(config_error(format!(
                "shard directory `{}` does not exist",
                d.display()
            )));
        }
    }
    let inputs = (!a.inputs.is_empty()).then_some(a.inputs.as_slice());
    let o = merge(&a.dirs, &a.out, inputs)?;
    eprintln!(
        "tarjuma: merged {} records ({} errors) from {} directories into {}",
        o.records,
        o.errors,
        a.dirs.len(),
        a.out.join("results.jsonl").display()
    );
    let mut bad = false;
    if !o.missing.is_empty() {
        bad = true;
        eprintln!(
            "tarjuma: {} articles are missing (in no shard): {}",
            o.missing.len(),
            o.missing.join(", ")
        );
    }
    for (id, dirs) in &o.duplicated {
        bad = true;
        let d: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        eprintln!(
            "tarjuma: article `{id}` was done by more than one shard: {} (the first was kept)",
            d.join(", ")
        );
    }
    if !o.unexpected.is_empty() {
        eprintln!(
            "tarjuma: warning: {} records are not from the given inputs: {}",
            o.unexpected.len(),
            o.unexpected.join(", ")
        );
    }
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    let tlm = config::llm_translator(&a.translator, &a.model)?;
    let text = read_input(&a.input)?;
    let paras = prepare(&text);
    if paras.is_empty() {
        anyhow::bail!("{}: the text is empty", a.input);
    }
    let urdu = is_urdu(&text);
    if !summarizing || urdu {
        if let Some(w) = config::translation_warning(&a.model, &a.translator) {
            eprintln!("{w}");
        }
    }
    let lm = if summarizing || (tc.is_none() && tlm.is_none()) {
        Some(mc.load()?)
    } else {
        None
    };
    let tc = tc.filter(|_| !summarizing || urdu);
    let tlm = tlm.filter(|_| !summarizing || urdu);
    let nmt = tc.map(|t| t.load()).transpose()?;
    let tlm = tlm.map(|t| t.load()).transpose()?;
    Ok((mc, text, paras, Engines { lm, nmt, tlm }))
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

fn summarize(args: SummarizeArgs) -> Result<ExitCode> {
    let a = &args.text;
    let max_bullets = config::validate_bullets(a.summary.max_bullets)?;
    let (mc, text, paras, mut engines) = open_text(a, true)?;
    let input: Vec<SumPara> = if is_urdu(&text) {
        let (outs, _) = engines.translate(&paras, &mc.translate, &mut |_| {})?;
        summary_input(&outs)
    } else {
        paras
            .iter()
            .enumerate()
            .map(|(i, p)| SumPara {
                index: i,
                english: p.text.clone(),
                source: p.text.clone(),
                kind: p.kind,
                usable: true,
            })
            .collect()
    };
    let (s, _) = engines.lm()?.summarize(&input, max_bullets)?;
    let gap = summary_gap(&input, &s);
    let mut out = std::io::stdout().lock();
    if args.json {
        let paragraphs: Vec<serde_json::Value> = input
            .iter()
            .map(|p| serde_json::json!({"index": p.index, "text": p.english, "kind": p.kind}))
            .collect();
        let v = serde_json::json!({
            "dateline": s.dateline,
            "paragraphs": paragraphs,
            "summary": s.bullets,
            "summary_warnings": s.warnings,
            "dropped_bullets": s.dropped,
            "summary_error": gap,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for b in &s.bullets {
            writeln!(out, "- {}", b.text)?;
        }
    }
    if !a.model.quiet {
        for d in &s.dropped {
            eprintln!("tarjuma: dropped bullet \"{}\": {}", d.text, d.reason);
        }
    }
    if let Some(g) = gap {
        eprintln!("tarjuma: no summary: {g}");
        return Ok(ExitCode::from(1));
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
                let source = match &m.source {
                    models::manifest::Source::Hub { repo, revision } => {
                        format!(" [{repo} @ {}]", &revision[..revision.len().min(7)])
                    }
                    _ => String::new(),
                };
                let urdu = if m.can_translate_urdu() {
                    "ur→en"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<30} {:<7} {:>7.0} MB  {:<10} {urdu:<5} {}{default}{source}",
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
