//! Shards: a deterministic share of a batch's articles, chosen by a stable hash of the
//! article id (not by position), so that adding a file to the input folder never moves
//! the other articles to another shard. Workers need no coordinator: each takes the ids
//! whose hash falls on its index.
//!
//! The index defaults from the schedulers' own variables: `JOB_COMPLETION_INDEX` (a
//! Kubernetes Indexed Job, with `--shards N`) or `SLURM_ARRAY_TASK_ID` and
//! `SLURM_ARRAY_TASK_COUNT` (a Slurm job array, less `SLURM_ARRAY_TASK_MIN`).

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// 64-bit FNV-1a of the id's UTF-8 bytes: stable across versions, platforms and runs
/// (Rust's `DefaultHasher` is not), and easy to reproduce elsewhere.
pub fn stable_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard `{s}`: expected I/N, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("--shard `{s}`: `{i}` is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("--shard `{s}`: `{n}` is not a number"))?;
        Shard::new(index, count).map_err(|e| format!("--shard `{s}`: {e}"))
    }

    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 {
            return Err("the number of shards must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard takes the article `id`.
    pub fn contains(&self, id: &str) -> bool {
        stable_hash(id) % self.count as u64 == self.index as u64
    }

    /// The shard from the flags, else from the scheduler's environment (`env` looks a
    /// variable up). Returns where it came from, for the log and run.json.
    pub fn resolve(
        flag: Option<&str>,
        shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, String> {
        if let Some(s) = flag {
            return Ok(Some((Shard::parse(s)?, "--shard")));
        }
        let num = |name: &str| -> Result<Option<usize>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}=`{v}` is not a number")),
            }
        };
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let Some(count) = shards else {
                return Err(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shards N \
                     (the Job's completions), or --shard I/N"
                        .into(),
                );
            };
            let s = Shard::new(index, count).map_err(|e| format!("JOB_COMPLETION_INDEX: {e}"))?;
            return Ok(Some((s, "JOB_COMPLETION_INDEX")));
        }
        if let (Some(id), Some(count)) =
            (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
            })?;
            let s = Shard::new(index, count).map_err(|e| {
                format!(
                    "SLURM_ARRAY_TASK_ID {id} (min {min}) of {count} tasks: {e}; use a \
                     contiguous array such as --array=0-{}",
                    count.saturating_sub(1)
                )
            })?;
            return Ok(Some((s, "SLURM_ARRAY_TASK_ID")));
        }
        if shards.is_some() {
            return Err(
                "--shards N needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); \
                 elsewhere give --shard I/N"
                    .into(),
            );
        }
        Ok(None)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn hash_is_stable_and_shards_partition() {
        // Pinned: changing the hash would move every article of a running job.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let ids: Vec<String> = (0..1000).map(|i| format!("article-{i}")).collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.contains(id)).count(), 1);
        }
        for s in &shards {
            let n = ids.iter().filter(|id| s.contains(id)).count();
            assert!((200..300).contains(&n), "shard {s}: {n} of 1000");
        }
    }

    #[test]
    fn flags_and_scheduler_variables() {
        let none = env(&[]);
        assert_eq!(Shard::resolve(None, None, &none).unwrap(), None);
        let (s, from) = Shard::resolve(Some("1/4"), None, &none).unwrap().unwrap();
        assert_eq!((s.index, s.count, from), (1, 4, "--shard"));
        assert!(Shard::parse("4/4").unwrap_err().contains("out of range"));
        assert!(Shard::parse("x/4").is_err() && Shard::parse("3").is_err());
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        let (s, _) = Shard::resolve(None, Some(3), &k8s).unwrap().unwrap();
        assert_eq!((s.index, s.count), (2, 3));
        assert!(Shard::resolve(None, None, &k8s)
            .unwrap_err()
            .contains("--shards"));
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        let (s, from) = Shard::resolve(None, None, &slurm).unwrap().unwrap();
        assert_eq!((s.index, s.count, from), (3, 4, "SLURM_ARRAY_TASK_ID"));
        // The flag wins over the environment.
        let (s, _) = Shard::resolve(Some("0/2"), None, &slurm).unwrap().unwrap();
        assert_eq!((s.index, s.count), (0, 2));
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(Shard::resolve(None, None, &stepped)
            .unwrap_err()
            .contains("contiguous"));
    }
}
