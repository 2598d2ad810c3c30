//! The documentation names only what the repository holds: every
//! repository path in README.md, RELIABILITY.md, BENCHMARKS.md and
//! docs/*.md (in inline code or as a link target) exists, and every link
//! into a Markdown file of the repository lands on a heading it has.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose paths are checked, relative to the root.
fn documents() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["README.md", "RELIABILITY.md", "BENCHMARKS.md"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("an entry of docs/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .to_path_buf()
        })
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// Where repository paths start; a word beginning with one of these in
/// inline code names a file or folder of the repository.
const TOP: &[&str] = &[
    "src/",
    "tests/",
    "docs/",
    "deploy/",
    "config/",
    "fixtures/",
    "migrations/",
    "domain/",
    "sims/",
    "model/",
    "bench/",
    "benches/",
    ".ci/",
];

/// The text outside fenced code blocks, line by line (examples of shell
/// sessions and output are not claims about the repository).
fn prose(markdown: &str) -> Vec<(usize, &str)> {
    let mut in_code = false;
    let mut out = Vec::new();
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            out.push((n + 1, line));
        }
    }
    out
}

/// Inline code spans of one line.
fn code_spans(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        let fence = &rest[start..start + ticks];
        match after.find(fence) {
            Some(end) => {
                out.push(after[..end].trim());
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    out
}

/// Link targets `](target)` of one line, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            plain.push(c);
        }
    }
    let mut out = Vec::new();
    let mut rest = plain.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

/// The repository path a word of inline code names, if it names one: the
/// file part of `path::test_name` and of `path#anchor`, without trailing
/// punctuation. Placeholders (`src/...`, `<dir>`) name none.
fn repo_path(word: &str) -> Option<&str> {
    let word = word.trim_start_matches(['(', '"', '\'', '[']);
    if !TOP.iter().any(|top| word.starts_with(top)) {
        return None;
    }
    let word = word.split("::").next().unwrap_or(word);
    let word = word.split('#').next().unwrap_or(word);
    let word = word.split(':').next().unwrap_or(word);
    if ["...", "…", "<", "{", "*", "$"]
        .iter()
        .any(|p| word.contains(p))
    {
        return None;
    }
    Some(word.trim_end_matches([',', '.', ';', ')', '"', '\'', ']']))
}

/// `base` joined with `relative`, `..` and `.` folded away.
fn join(base: &Path, relative: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in base.join(relative).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated heading gets
/// `-1`, `-2`... as on GitHub).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose(markdown) {
        if line.starts_with('#') {
            let base = slug(line.trim_start_matches('#'));
            let mut anchor = base.clone();
            let mut n = 0;
            while out.contains(&anchor) {
                n += 1;
                anchor = format!("{base}-{n}");
            }
            out.insert(anchor);
        }
    }
    out
}

/// What is wrong with the paths and links of one document, one line each.
fn problems_of(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc))
        .unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    problems_in(doc, &text)
}

/// What is wrong with the paths and links of `text`, read as the document
/// `doc` (relative to the root: links resolve from its folder).
fn problems_in(doc: &Path, text: &str) -> Vec<String> {
    let dir = doc.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let at = format!("{}:{n}", doc.display());
        for span in code_spans(line) {
            for word in span.split_whitespace() {
                if let Some(path) = repo_path(word)
                    && !root().join(path).exists()
                {
                    out.push(format!("{at}: `{path}` does not exist"));
                }
            }
        }
        for target in link_targets(line) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with('#') && target.len() == 1
            {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.to_path_buf()
            } else {
                join(dir, file)
            };
            let full = root().join(&path);
            if !full.exists() {
                out.push(format!(
                    "{at}: link to {target}: {} does not exist",
                    path.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor
                && full.extension().is_some_and(|x| x == "md")
            {
                let markdown = std::fs::read_to_string(&full).expect("a linked Markdown file");
                if !anchors(&markdown).contains(anchor) {
                    out.push(format!(
                        "{at}: link to {target}: {} has no heading #{anchor}",
                        path.display()
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let docs = documents();
    assert!(docs.len() >= 4, "{docs:?}");
    // The reader sees the paths the docs name (a reader that found none
    // would pass any docs).
    let named: usize = docs
        .iter()
        .map(|d| {
            let text = std::fs::read_to_string(root().join(d)).expect("a document");
            prose(&text)
                .iter()
                .flat_map(|(_, l)| code_spans(l))
                .flat_map(str::split_whitespace)
                .filter_map(repo_path)
                .count()
        })
        .sum();
    assert!(
        named >= 100,
        "only {named} repository paths found in the docs"
    );
    let problems: Vec<String> = docs.iter().flat_map(|d| problems_of(d)).collect();
    assert!(
        problems.is_empty(),
        "{} dead paths or links in the docs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_path_reader_finds_what_it_must() {
    assert_eq!(
        repo_path("tests/faults.rs::eures_500_storm"),
        Some("tests/faults.rs")
    );
    assert_eq!(
        repo_path("(docs/runbook.md#backup-and-restore),"),
        Some("docs/runbook.md")
    );
    assert_eq!(repo_path("src/store/"), Some("src/store/"));
    assert_eq!(repo_path("src/..."), None);
    assert_eq!(repo_path("/var/lib/eures-sync"), None);
    assert_eq!(code_spans("a `x` b ``y`z`` c"), vec!["x", "y`z"]);
    assert_eq!(
        link_targets("see [a](docs/a.md#b) and `[c](d)` [e](../f.md)"),
        vec!["docs/a.md#b", "../f.md"]
    );
    assert_eq!(
        join(Path::new("docs"), "../README.md"),
        PathBuf::from("README.md")
    );
    let md = "# A b\n```\n# not a heading\n```\n## A b\n### `c`: d\n";
    assert_eq!(
        anchors(md),
        BTreeSet::from(["a-b".to_string(), "a-b-1".to_string(), "c-d".to_string()])
    );
    // Dead paths and links are found and named; live ones pass.
    let text = "`src/nope.rs` and `src/lib.rs`, [r](../README.md#no-such-heading),\n\
                [s](security.md), [t](gone.md), `tests/docs.rs::x`\n";
    let found = problems_in(Path::new("docs/x.md"), text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("`src/nope.rs` does not exist"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("has no heading #no-such-heading"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("docs/gone.md does not exist"),
        "{found:#?}"
    );
}
