//! Matmul kernels side by side on the translator's matrix shapes: tarjuma's int8 kernel,
//! candle's Q8_0 `QMatMul`, candle's f32 matmul (weights stored [in, out], contiguous)
//! and tarjuma's packed f32 kernel (`backend::sgemm`, what the models use on AVX2 CPUs).
//! Prints GMAC/s per kernel, the packed kernel's weight stream in GB/s, and the ratios.
//! Not a test.
//!
//! cargo bench --bench int8 -- [--threads 2] [--rows 1,16,640] [--work MACS] [--only NAME]

use std::time::Instant;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use tarjuma::backend::int8::Int8Matrix;

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() -> Result<()> {
    let mut threads = 2;
    let mut rows = vec![1usize, 16, 640];
    let mut min_work = 2e9;
    let mut only = String::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => threads = it.next().unwrap().parse()?,
            "--rows" => {
                rows = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|v| v.parse().unwrap())
                    .collect()
            }
            "--work" => min_work = it.next().unwrap().parse()?,
            "--only" => only = it.next().unwrap(),
            _ => {}
        }
    }
    tarjuma::config::set_threads(Some(threads));
    // (name, out, in): Marian d=512 ffn 2048 vocab 59464; NLLB-600M d=1024 ffn 4096.
    let shapes = [
        ("marian qkv", 1536, 512),
        ("marian fc1", 2048, 512),
        ("marian fc2", 512, 2048),
        ("marian head", 59464, 512),
        ("nllb qkv", 3072, 1024),
        ("nllb fc2", 1024, 4096),
        ("nllb head", 256206, 1024),
    ];
    println!(
        "{:<12} {:>5} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "shape",
        "rows",
        "int8",
        "q8_0",
        "f32",
        "packed",
        "GB/s",
        "i8/q8",
        "i8/f32",
        "pk/f32",
        "split",
        "bound"
    );
    for (name, n, k) in shapes {
        if !name.contains(only.as_str()) {
            continue;
        }
        let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)?;
        let wv: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let i8m = Int8Matrix::quantize(&wv, n, k);
        let q8 = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?;
        let wt = w.t()?.contiguous()?;
        let packed = tarjuma::backend::sgemm::available()
            .then(|| tarjuma::backend::sgemm::PackedF32::pack(&wv, n, k));
        // LM heads are stored split; one row can be bounded from half of them.
        let split = (tarjuma::backend::sgemm::available() && rows.contains(&1))
            .then(|| tarjuma::backend::sgemm::PackedF32::pack_split(&wv, n, k));
        for &m in &rows {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
            let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let macs = (m * n * k) as f64;
            let reps = ((min_work / macs) as usize).clamp(1, 2000);
            let ti = time(reps, || {
                std::hint::black_box(i8m.matmul(&xv, m, None));
            });
            let tq = time(reps, || {
                std::hint::black_box(q8.forward(&x).unwrap());
            });
            let tf = time(reps, || {
                std::hint::black_box(x.matmul(&wt).unwrap());
            });
            let g = |t: f64| macs / t / 1e9;
            let (gv, gbs, ratio) = match &packed {
                Some(p) => {
                    let tp = time(reps, || {
                        std::hint::black_box(p.matmul(&xv, m, None));
                    });
                    let gb = (n * k * 4) as f64 / tp / 1e9;
                    (
                        format!("{:.1}", g(tp)),
                        format!("{gb:.1}"),
                        format!("{:.2}x", tf / tp),
                    )
                }
                None => ("-".into(), "-".into(), "-".into()),
            };
            // One row: the split matrix's product, and its bound from the upper halves
            // (as GB/s of the bytes each reads).
            let (gsplit, gbound) = match (&split, m) {
                (Some(sp), 1) => {
                    let ts = time(reps, || {
                        std::hint::black_box(sp.matmul(&xv, 1, None));
                    });
                    let tb = time(reps, || {
                        std::hint::black_box(sp.bounded_row(&xv, None));
                    });
                    let gb = |bytes: usize, t: f64| format!("{:.1}", bytes as f64 / t / 1e9);
                    (gb(n * k * 4, ts), gb(n * k * 2, tb))
                }
                _ => ("-".into(), "-".into()),
            };
            println!(
                "{name:<12} {m:>5} {:>9.1} {:>9.1} {:>9.1} {gv:>9} {gbs:>6} {:>7.2}x {:>7.2}x {ratio:>9} {gsplit:>9} {gbound:>9}",
                g(ti),
                g(tq),
                g(tf),
                tq / ti,
                tf / ti
            );
        }
    }
    Ok(())
}
