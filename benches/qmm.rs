//! Quantized products of `backend::qmm` beside candle's `QMatMul` (the plain path) on
//! the weight shapes of the pip-carried models, alternating in one process, best of
//! several runs. GFLOP/s counts 2 · m · k · n. Formats that the decoder tiles at load
//! (Q5_0, Q8_0) are also measured tiled, as the models run them.
//!
//! usage: cargo bench --bench qmm [-- --threads N]
//!   QMM_ROWS=1,8,256   input rows per product
//!   QMM_HEAD=1         also Qwen2.5-0.5B's output matrix (Q8_0, 151936 × 896)

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use tarjuma::backend::qmm::{Bytes, QWeight};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        let t = &args[i + 1];
        std::env::set_var("RAYON_NUM_THREADS", t);
        std::env::set_var("CANDLE_NUM_THREADS", t);
    }
    tarjuma::backend::tune_allocator();
    let cpu = tarjuma::bench::Cpu::detect();
    println!(
        "cpu: {}, {} threads",
        cpu.line(),
        candle_core::utils::get_num_threads()
    );
    println!("| format | n × k | m | candle GFLOP/s | ours GFLOP/s | ours / candle | ours tiled GFLOP/s |");
    println!("|---|---|---|---|---|---|---|");
    let dev = Device::Cpu;
    let mut shapes = vec![
        (GgmlDType::Q5_0, 4864, 896),
        (GgmlDType::Q8_0, 896, 896),
        (GgmlDType::Q4K, 896, 4864),
        (GgmlDType::Q6K, 896, 4864),
        (GgmlDType::Q4_1, 1536, 576),
    ];
    if std::env::var("QMM_HEAD").is_ok_and(|v| v == "1") {
        shapes.push((GgmlDType::Q8_0, 151936, 896));
    }
    for (dt, n, k) in shapes {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let q = QTensor::quantize(&w, dt)?;
        let ours = QWeight::new(dt, n, k, Bytes::owned(&q.data()?))?;
        let tiled = QWeight::new(dt, n, k, Bytes::owned(&q.data()?))?.into_tiled();
        let tiled = (tiled.kernel() != ours.kernel()).then_some(tiled);
        let plain = QMatMul::from_qtensor(q)?;
        let ms: Vec<usize> = std::env::var("QMM_ROWS")
            .ok()
            .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 8, 256]);
        for &m in &ms {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let reps = (20_000_000 / (m * k * n / 64).max(1)).clamp(2, 200);
            let (mut bc, mut bo, mut bt) = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..3 {
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(plain.forward(&x)?);
                }
                bc = bc.min(t.elapsed().as_secs_f64() / reps as f64);
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(ours.matmul(&xv, m));
                }
                bo = bo.min(t.elapsed().as_secs_f64() / reps as f64);
                if let Some(w) = &tiled {
                    let t = Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(w.matmul(&xv, m));
                    }
                    bt = bt.min(t.elapsed().as_secs_f64() / reps as f64);
                }
            }
            let flop = 2.0 * (m * k * n) as f64 / 1e9;
            let tiled = match tiled {
                Some(_) => format!("{:.1}", flop / bt),
                None => "-".into(),
            };
            println!(
                "| {dt:?} | {n} × {k} | {m} | {:.1} | {:.1} | {:.2} | {tiled} |",
                flop / bc,
                flop / bo,
                bc / bo
            );
        }
    }
    // A decoding layer's query, key and value projections (Qwen2.5-0.5B's shapes and
    // formats, tiled as the decoder loads them): one after another, and grouped.
    let qkv: Vec<QWeight> = [
        (GgmlDType::Q5_0, 896),
        (GgmlDType::Q5_0, 128),
        (GgmlDType::Q8_0, 128),
    ]
    .into_iter()
    .map(|(dt, n)| -> anyhow::Result<QWeight> {
        let w = Tensor::randn(0f32, 1.0, (n, 896), &dev)?;
        let q = QTensor::quantize(&w, dt)?;
        Ok(QWeight::new(dt, n, 896, Bytes::owned(&q.data()?))?.into_tiled())
    })
    .collect::<anyhow::Result<_>>()?;
    let refs: Vec<&QWeight> = qkv.iter().collect();
    println!();
    println!("| q, k, v (896 → 896, 128, 128) | m | one by one µs | grouped µs | ratio |");
    println!("|---|---|---|---|---|");
    for m in [1usize, 8] {
        let x: Vec<f32> = (0..m * 896)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let reps = 2000;
        let (mut b1, mut b2) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                for w in &qkv {
                    std::hint::black_box(w.matmul(&x, m));
                }
            }
            b1 = b1.min(t.elapsed().as_secs_f64() / reps as f64);
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(QWeight::matmul_many(&refs, &x, m));
            }
            b2 = b2.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "| | {m} | {:.1} | {:.1} | {:.2} |",
            b1 * 1e6,
            b2 * 1e6,
            b1 / b2
        );
    }
    Ok(())
}
