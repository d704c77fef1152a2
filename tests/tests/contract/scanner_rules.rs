//! The scanner rules in `scanners/` find keyward tokens: the gitleaks rule's regex (the TruffleHog
//! detector's and the GitHub custom pattern's are the same) matches real tokens and look-alikes,
//! and the checksum `scanners/README.md` shows (run as written, in Python) tells them apart, as
//! keyward itself does.

use std::path::{Path, PathBuf};

use keyward::auth::personal_token::{DEFAULT_PREFIX, TokenFormat};

fn scanners() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scanners")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(scanners().join(name)).unwrap()
}

/// The regex of the gitleaks rule, as written in its TOML literal string.
fn gitleaks_regex() -> String {
    let toml = read("gitleaks.toml");
    let start = toml.find("regex = '''").expect("a regex") + "regex = '''".len();
    toml[start..].split("'''").next().unwrap().to_owned()
}

fn mistyped(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'Z' { b'Y' } else { b'Z' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn every_rule_is_keywards_pattern() {
    let format = TokenFormat::new(DEFAULT_PREFIX).unwrap();
    let bounded = format!(r"\b({})\b", format.pattern());
    assert_eq!(gitleaks_regex(), bounded);
    let trufflehog: serde_json::Value = serde_norway::from_str(&read("trufflehog.yaml")).unwrap();
    assert_eq!(trufflehog["detectors"][0]["regex"]["token"], bounded.as_str());
    assert_eq!(trufflehog["detectors"][0]["keywords"][0], DEFAULT_PREFIX);
    assert!(read("README.md").contains(&format!("Secret format: `{}`", format.pattern())));
}

#[test]
fn the_rule_finds_tokens_and_the_checksum_tells_real_from_mistyped() {
    let format = TokenFormat::new(DEFAULT_PREFIX).unwrap();
    let rule = regex::Regex::new(&gitleaks_regex()).unwrap();
    let real: Vec<String> = (0..50).map(|_| format.generate().expose().to_owned()).collect();
    let typos: Vec<String> = real.iter().enumerate().map(|(i, t)| mistyped(t, DEFAULT_PREFIX.len() + i % 36)).collect();
    for token in real.iter().chain(&typos) {
        let text = format!("export KEYWARD_TOKEN=\"{token}\"\n");
        let found = rule.captures(&text).and_then(|c| c.get(1)).map(|m| m.as_str());
        assert_eq!(found, Some(token.as_str()), "the rule finds {token}");
    }
    for not_one in [
        format!("x{}", real[0]),
        format!("{}a", real[0]),
        "kw_pat_tooShort".to_owned(),
        real[0].replace("kw_pat_", "kw-pat-"),
    ] {
        assert!(rule.captures(&not_one).is_none(), "{not_one}");
    }
    assert!(real.iter().all(|t| format.is_well_formed(t)));
    assert!(typos.iter().all(|t| !format.is_well_formed(t)), "every single-character typo fails the CRC32");

    // The README's Python check agrees with keyward's on every one.
    let readme = read("README.md");
    let code = readme.split("```python\n").nth(1).unwrap().split("```").next().unwrap();
    let script = format!("{code}\nimport sys\nfor line in sys.stdin:\n    print(is_keyward_token(line.strip()))\n");
    let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let input: String = real.iter().chain(&typos).map(|t| format!("{t}\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let said: Vec<&str> = std::str::from_utf8(&output.stdout).unwrap().lines().collect();
    let expected: Vec<&str> = real.iter().map(|_| "True").chain(typos.iter().map(|_| "False")).collect();
    assert_eq!(said, expected);
}
