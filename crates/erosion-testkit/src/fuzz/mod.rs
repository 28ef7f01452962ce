//! Fuzz targets that run under `cargo test` on stable Rust: proptest generates inputs (random
//! bytes, and real seed files with a few mutations: [`mutate`]), and every case must
//!
//! - not panic (an error is fine, and its message must carry no raw control character but
//!   line breaks, as `erosion_model::text` escapes them),
//! - allocate at most `budget.per_byte * input bytes + budget.constant` bytes at its peak over
//!   what was live before it (counted by [`Counting`], the test binary's global allocator),
//! - finish within `budget.time` (a case still running after [`HANG`] aborts the run, naming
//!   the file its input was saved to).
//!
//! The seed is fixed and the case count small, so `cargo test` runs the same cases every time
//! in seconds. `EROSION_FUZZ_CASES=N` runs N cases per target instead, and
//! `EROSION_FUZZ_SEED=S` other cases (the long run; README, "Bad input and interrupted runs").
//! `EROSION_FUZZ_VERBOSE=1` prints each refusal. A failing case is shrunk and saved under the system temp folder
//! (`erosion-fuzz-failures/TARGET.bin`) to be committed as a regression case.

pub mod alloc;
pub mod mutate;

pub use alloc::Counting;
pub use mutate::{inputs, Mutation, Seeds};

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Wall time after which a case counts as hung: the process is aborted, as a hung call cannot
/// be stopped from outside.
pub const HANG: Duration = Duration::from_secs(120);

/// The seed of the short run.
const DEFAULT_SEED: u64 = 17;

/// What one case may cost.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Peak bytes allocated per byte of input.
    pub per_byte: usize,
    /// Peak bytes allocated whatever the input.
    pub constant: usize,
    /// Wall time of one case (debug build, one core).
    pub time: Duration,
}

impl Budget {
    /// The peak allocation allowed for an input of `len` bytes.
    pub fn bytes(&self, len: usize) -> usize {
        self.per_byte
            .saturating_mul(len)
            .saturating_add(self.constant)
    }
}

/// One measurement lock per process: peaks are process-wide, so cases run one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// Held by each test of a fuzz binary for its whole run, seeds' setup included: the peaks are
/// process-wide, so another test building its seeds meanwhile would count against a case.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the tests of a fuzz binary one at a time: each starts with
/// `let _serial = fuzz::serial();`.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Cases per target: `EROSION_FUZZ_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    match std::env::var("EROSION_FUZZ_CASES") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("EROSION_FUZZ_CASES={n} is not a case count")),
        Err(_) => default,
    }
}

fn seed() -> u64 {
    match std::env::var("EROSION_FUZZ_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("EROSION_FUZZ_SEED={s} is not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// Where a failing input of `target` is saved.
pub fn failure_path(target: &str, what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("erosion-fuzz-failures");
    std::fs::create_dir_all(&dir).expect("the temp folder is writable");
    dir.join(format!("{target}-{what}.bin"))
}

/// The case running now, for the watchdog: its target, input and start.
type Running = Option<(String, Arc<Vec<u8>>, Instant)>;

/// One thread per process that aborts the run when a case runs past [`HANG`] (a hung call
/// cannot be stopped from outside), after saving the case's input.
struct Watchdog(Arc<Mutex<Running>>);

/// Clears the watched case when dropped (after the case, or when it panics).
struct Watched<'a>(&'a Watchdog);

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Watchdog {
    fn watch(&self, target: &str, input: &[u8]) -> Watched<'_> {
        let running = (target.to_string(), Arc::new(input.to_vec()), Instant::now());
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(running);
        Watched(self)
    }
}

fn watchdog() -> &'static Watchdog {
    static DOG: OnceLock<Watchdog> = OnceLock::new();
    DOG.get_or_init(|| {
        let running: Arc<Mutex<Running>> = Arc::default();
        let seen = Arc::clone(&running);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let guard = seen.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((target, input, start)) = guard.as_ref() {
                if start.elapsed() > HANG {
                    let path = failure_path(target, "hang");
                    let _ = std::fs::write(&path, input.as_slice());
                    eprintln!(
                        "fuzz target {target}: a case ran past {HANG:?}; its input is in {}",
                        path.display()
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog(running)
    })
}

/// The largest allocation and time seen, for the summary line.
#[derive(Default)]
struct Worst {
    cases: usize,
    errors: usize,
    bytes_share: f64,
    time: Duration,
}

/// Runs `case` on one input under `budget` (module docs): `Err` says which property failed.
/// `case` returns the library's error message when it refused the input.
pub fn check(
    target: &str,
    budget: Budget,
    input: &[u8],
    case: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<(Option<String>, usize, Duration), String> {
    let _lock = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    assert!(
        *INSTALLED.get_or_init(alloc::installed),
        "the fuzz targets need erosion_testkit::fuzz::Counting as the test binary's \
         #[global_allocator]"
    );
    let limit = budget.bytes(input.len());
    let _watched = watchdog().watch(target, input);
    let base = alloc::current();
    // A runaway case hits the ceiling and aborts instead of exhausting the machine.
    alloc::set_ceiling(
        base.saturating_add(limit.saturating_mul(4))
            .max(base + (1 << 30)),
    );
    alloc::reset_peak();
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(input)));
    let elapsed = start.elapsed();
    let used = alloc::peak().saturating_sub(base);
    alloc::set_ceiling(usize::MAX);
    let refused = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(message)) => Some(message),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("panicked: {what}"));
        }
    };
    if let Some(message) = &refused {
        if erosion_model::text::escape_lines(message) != *message {
            return Err(format!(
                "an error message carries raw control characters: {message:?}"
            ));
        }
    }
    if used > limit {
        return Err(format!(
            "allocated {used} bytes at its peak for {} input bytes; the budget is {limit} \
             ({} per byte + {})",
            input.len(),
            budget.per_byte,
            budget.constant
        ));
    }
    if elapsed > budget.time {
        return Err(format!("took {elapsed:?}; the budget is {:?}", budget.time));
    }
    Ok((refused, used, elapsed))
}

/// Runs fuzz target `target`: `cases(default_cases)` inputs ([`inputs`]: `seeds` mutated, or
/// random bytes), each through [`check`].
/// Every seed must pass unmutated (else mutations of it would only ever meet the first check).
/// Panics with the shrunk failing input's file when a case breaks a property.
pub fn run(
    target: &str,
    default_cases: u32,
    budget: Budget,
    seeds: Seeds,
    case: impl Fn(&[u8]) -> Result<(), String>,
) {
    for (i, seed) in seeds.files.iter().enumerate() {
        if let Err(e) =
            check(target, budget, seed, &case).and_then(|(refused, ..)| refused.map_or(Ok(()), Err))
        {
            panic!("fuzz target {target}: seed {i} does not pass unmutated: {e}");
        }
    }
    let strategy = inputs(seeds, 4096);
    let config = Config {
        cases: cases(default_cases),
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        max_shrink_iters: 500,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let worst = RefCell::new(Worst::default());
    // EROSION_FUZZ_VERBOSE=1 prints every refusal: whether the mutations reach deep checks.
    let verbose = std::env::var_os("EROSION_FUZZ_VERBOSE").is_some();
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |input| {
        let (refused, used, time) =
            check(target, budget, &input, &case).map_err(TestCaseError::fail)?;
        if let (Some(message), true) = (&refused, verbose) {
            eprintln!("  {target} refused {} bytes: {message:.300}", input.len());
        }
        let mut w = worst.borrow_mut();
        w.cases += 1;
        w.errors += refused.is_some() as usize;
        w.bytes_share = w
            .bytes_share
            .max(used as f64 / budget.bytes(input.len()) as f64);
        w.time = w.time.max(time);
        Ok(())
    });
    let w = worst.into_inner();
    eprintln!(
        "fuzz target {target}: {} cases ({} refused) in {:.1?}; worst: {:.0}% of the allocation \
         budget, {:.1?} of {:?}",
        w.cases,
        w.errors,
        started.elapsed(),
        w.bytes_share * 100.0,
        w.time,
        budget.time
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            let path = failure_path(target, "shrunk");
            std::fs::write(&path, &input).expect("the failing input can be saved");
            panic!(
                "fuzz target {target} (seed {}): {reason}; the shrunk input ({} bytes) is in {}: \
                 fix the fault and commit the input as a regression case",
                seed(),
                input.len(),
                path.display()
            );
        }
        Err(e) => panic!("fuzz target {target}: {e}"),
    }
}
