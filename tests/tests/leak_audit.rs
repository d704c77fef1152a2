//! The leak audit: after the whole suite ran with `KEYWARD_TEST_LEAK_DIR` set (the harness then
//! logs every test process at TRACE and records every planted secret, `keyward_tests::leaks`), no
//! planted secret appears in any log line, error body (the gateway logs each) or panic message.
//!
//! `scripts/test` runs it last, explicitly (`--ignored`): on its own it has nothing to read.

use std::collections::BTreeSet;
use std::path::Path;

fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the leak directory").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            let bytes = std::fs::read(entry.path()).expect("read a capture file");
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    texts
}

#[test]
#[ignore = "reads what the whole suite captured; scripts/test runs it after the suite"]
fn no_planted_secret_reached_a_log_line_error_body_or_panic_message() {
    let dir = std::env::var_os(keyward_tests::leaks::DIR_VAR).expect("KEYWARD_TEST_LEAK_DIR names the capture");
    let dir = Path::new(&dir);
    let planted: BTreeSet<String> =
        files(dir, "planted-").iter().flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>()).collect();
    let logs = files(dir, "log-");
    let panics = files(dir, "panic-");
    let lines: usize = logs.iter().map(|l| l.lines().count()).sum();
    let error_bodies: usize = logs.iter().map(|l| l.matches("\"error answered\"").count()).sum();

    // The capture must have seen the suite, or this audit proves nothing. (Third-party crates log
    // at INFO at most, as in production, so most lines are keyward's own.)
    // The two integration binaries, the function binaries run at TRACE, the local gateway's own tests.
    assert!(logs.len() >= 3, "{} test processes logged", logs.len());
    assert!(lines >= 5_000, "{lines} log lines");
    let binaries = files(dir, "log-trace-run-");
    assert!(!binaries.is_empty(), "the function binaries' TRACE run was captured");
    assert!(error_bodies >= 200, "{error_bodies} error bodies");
    assert!(planted.len() >= 200, "{} planted secrets", planted.len());
    for kind in ["sk-", "whsec_", "-service-secret-"] {
        assert!(planted.iter().any(|s| s.contains(kind)), "no planted secret of kind {kind}");
    }

    // One pass over every file for all secrets at once (the capture is hundreds of MB).
    let secrets: Vec<&String> = planted.iter().collect();
    let matcher = aho_corasick::AhoCorasick::new(&secrets).expect("build the matcher");
    let mut leaks = Vec::new();
    for (what, texts) in [("log", &logs), ("panic", &panics)] {
        for text in texts {
            for found in matcher.find_iter(text.as_str()) {
                let column = found.start() - text[..found.start()].rfind('\n').map_or(0, |at| at + 1);
                // Where, never the secret itself.
                leaks.push(format!("{what}: a {}-character planted secret, at column {column}", found.len()));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
    println!(
        "leak audit: {} planted secrets, {} test processes, {lines} log lines ({} from the function binaries at \
         TRACE), {error_bodies} error bodies, {} panic files: no leak",
        planted.len(),
        logs.len(),
        binaries.iter().map(|l| l.lines().count()).sum::<usize>(),
        panics.len()
    );
}

/// The role audit: every DynamoDB access SECURITY.md's role table grants a function (its keyring
/// partitions aside, which follow the key policy's purposes) is one the function's code made in
/// some moto-backed test of the suite, as `CallCounter` recorded it (`roles-<pid>.txt`). A row no
/// test uses is a role broader than its code. (That the code makes no access beyond the table is
/// checked as each request is made.)
#[test]
#[ignore = "reads what the whole suite captured; scripts/test runs it after the suite"]
fn every_documented_access_is_one_the_code_makes() {
    let dir = std::env::var_os(keyward_tests::leaks::DIR_VAR).expect("KEYWARD_TEST_LEAK_DIR names the capture");
    let used: BTreeSet<(String, String, String)> = files(Path::new(&dir), "roles-")
        .iter()
        .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let mut fields = line.split(' ').map(str::to_owned);
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .collect();
    assert!(used.len() >= 30, "the capture saw {} kinds of access: did the moto suites run?", used.len());
    let documented = keyward_tests::iam::documented_accesses();
    let unused: Vec<_> = documented
        .iter()
        .filter(|(_, _, partition)| !partition.starts_with("KEYRING#"))
        .filter(|row| !used.contains(row))
        .collect();
    assert!(unused.is_empty(), "SECURITY.md grants accesses no test's code made: {unused:?}");
    println!(
        "role audit: {} documented accesses, {} kinds used by the suite: none unused",
        documented.len(),
        used.len()
    );
}
