//! Seeds of the randomised tests (fault draws, kill instants, fuzz and
//! property cases): printed with the test's output, so a failure shows how
//! to repeat it, and taken from `EURES_TEST_SEED` when set.

/// The variable that fixes every seed of a run.
pub const SEED_VAR: &str = "EURES_TEST_SEED";

/// The seed for `what`: `EURES_TEST_SEED` when set, else a random one;
/// printed (the test harness shows it when the test fails).
pub fn seed(what: &str) -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?}: expected an unsigned integer")),
        Err(_) => rand::random(),
    };
    println!("{what}: seed {seed} ({SEED_VAR}={seed} repeats it)");
    seed
}
