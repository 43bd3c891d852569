//! Property tests of the command line's argument parser and of the configuration parser: arbitrary
//! arguments (shards, sizes, counts, paths, subject lists, unknown names) and arbitrary TOML never
//! panic; what parses is within the documented ranges; a bad configuration value is an error that
//! names its key; a configuration that loads round-trips through its TOML.

use std::ffi::OsString;

use brain_diffuser::cli::{Cli, Command};
use brain_diffuser::config::Config;
use clap::Parser;
use proptest::prelude::*;

/// Integers as text: small, boundary, huge, negative, and junk.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u64..=2000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            u64::MAX.to_string(),
            format!("{}0", u64::MAX),
            i64::MAX.to_string(),
            (i64::MAX as u64 + 1).to_string(),
            "0".to_owned(),
            "-1".to_owned(),
            "1e3".to_owned(),
            String::new(),
        ]),
        1 => "[ -~]{0,12}",
    ]
}

/// A `--shard` value.
fn shard() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (number(), number()).prop_map(|(k, n)| format!("{k}/{n}")),
        4 => (1usize..=9, 1usize..=9).prop_map(|(k, n)| format!("{k}/{n}")),
        1 => Just(format!("{0}/{0}", usize::MAX)),
        1 => number(),
        1 => "[ -~]{0,12}",
    ]
}

/// A comma-separated list of items.
fn list(item: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop::collection::vec(item, 0..5).prop_map(|items| items.join(","))
}

/// Names from `known`, or anything.
fn name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(known).prop_map(str::to_owned),
        1 => "[a-z-]{0,12}",
        1 => "[ -~]{0,8}",
    ]
}

/// A path: existing folders and files, missing ones, a file's child, empty, anything.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["/", "/tmp", "/tmp/brain-diffuser-fuzz-run", "src", "Cargo.toml"])
            .prop_map(str::to_owned),
        2 => prop::sample::select(vec!["/etc/hostname", "/etc/hostname/child", "/nonexistent/brain-diffuser", ""])
            .prop_map(str::to_owned),
        1 => "[ -~]{0,16}",
        1 => ".{0,8}",
    ]
}

const GROUPS: &[&str] = &["vdvae", "clip-vision", "clip-text"];
const VARIANTS: &[&str] = &["brain-diffuser", "only-vdvae", "no-vdvae", "no-clip-text", "no-clip-vision"];
const PROTOCOLS: &[&str] = &["brain-diffuser", "mindeye", "bd"];
const DEVICES: &[&str] = &["cpu", "cuda", "cuda:0", "cuda:1", "cuda:999", "gpu", "cuda:-1"];

/// A subcommand with arbitrary values for its options.
fn subcommand() -> impl Strategy<Value = Vec<String>> {
    let opt = |flag: &'static str, value: BoxedStrategy<String>| {
        prop::option::weighted(0.4, value).prop_map(move |v| v.map(|v| vec![flag.to_owned(), v]).unwrap_or_default())
    };
    prop_oneof![
        Just(vec!["prepare".to_owned()]),
        (opt("--shard", shard().boxed()), opt("--groups", list(name(GROUPS)).boxed())).prop_map(|(a, b)| [
            vec!["extract".to_owned()],
            a,
            b
        ]
        .concat()),
        opt("--groups", list(name(GROUPS)).boxed()).prop_map(|a| [vec!["fit".to_owned()], a].concat()),
        Just(vec!["predict".to_owned()]),
        opt("--shard", shard().boxed()).prop_map(|a| [vec!["reconstruct".to_owned()], a].concat()),
        (opt("--protocols", list(name(PROTOCOLS)).boxed()), opt("--batch-size", number().boxed()))
            .prop_map(|(a, b)| [vec!["evaluate".to_owned()], a, b].concat()),
        (
            opt("--shard", shard().boxed()),
            opt("--variants", list(name(VARIANTS)).boxed()),
            opt("--subject", number().boxed())
        )
            .prop_map(|(a, b, c)| [vec!["ablate".to_owned()], a, b, c].concat()),
        opt("--shard", shard().boxed()).prop_map(|a| [vec!["average".to_owned()], a].concat()),
        opt("--shard", shard().boxed()).prop_map(|a| [vec!["roi".to_owned()], a].concat()),
        Just(vec!["weights-roi".to_owned()]),
        (opt("--images", number().boxed()), opt("--cell", number().boxed())).prop_map(|(a, b)| [
            vec!["report".to_owned()],
            a,
            b
        ]
        .concat()),
        Just(vec!["models".to_owned()]),
        (opt("--out", path().boxed()), opt("--seed", number().boxed())).prop_map(|(a, b)| [
            vec!["demo".to_owned()],
            a,
            b
        ]
        .concat()),
        Just(vec!["config".to_owned()]),
        name(&["prepare", "frobnicate"]).prop_map(|n| vec![n]),
    ]
}

/// Global options with arbitrary values.
fn globals() -> impl Strategy<Value = Vec<String>> {
    let opt = |flag: &'static str, value: BoxedStrategy<String>| {
        prop::option::weighted(0.4, value).prop_map(move |v| v.map(|v| vec![flag.to_owned(), v]).unwrap_or_default())
    };
    (
        opt("--run", path().boxed()),
        opt("--config", path().boxed()),
        opt("--nsd", path().boxed()),
        opt("--captions", path().boxed()),
        opt("--models", path().boxed()),
        opt("--device", name(DEVICES).boxed()),
        opt(
            "--subjects",
            prop_oneof![
                2 => prop::sample::subsequence((1u8..=8).collect::<Vec<_>>(), 1..=4).prop_shuffle()
                    .prop_map(|v| v.iter().map(u8::to_string).collect::<Vec<_>>().join(",")),
                1 => list(prop_oneof![4 => (1u8..=8).prop_map(|n| n.to_string()), 1 => number()]),
            ]
            .boxed(),
        ),
    )
        .prop_map(|(a, b, c, d, e, f, g)| [a, b, c, d, e, f, g].concat())
}

/// Whether `text` appears in `args` as the value of `flag`.
fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2).rev().find(|w| w[0] == flag).map(|w| w[1].as_str())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any arguments: parsing and validation return (never panic); what parses is in range.
    #[test]
    fn any_arguments_parse_or_fail_cleanly(
        before in globals(),
        command in subcommand(),
        after in globals(),
    ) {
        let args: Vec<String> = std::iter::once("brain-diffuser".to_owned())
            .chain(before).chain(command).chain(after).collect();
        let Ok(cli) = Cli::try_parse_from(args.iter().map(OsString::from)) else { return Ok(()) };
        for &s in &cli.global.subjects {
            prop_assert!((1..=8).contains(&s), "{args:?}: subject {s}");
        }
        match &cli.command {
            Command::Report { images, cell } => {
                prop_assert!(*images >= 1 && (16..=1024).contains(cell), "{args:?}");
            }
            Command::Evaluate { batch_size, protocols } => {
                prop_assert!((1..=1024).contains(batch_size), "{args:?}");
                prop_assert!(protocols.iter().all(|p| p == "brain-diffuser" || p == "mindeye"), "{args:?}");
            }
            Command::Ablate { subject, .. } => prop_assert!((1..=8).contains(subject), "{args:?}"),
            Command::Demo { seed, .. } => prop_assert!(i64::try_from(*seed).is_ok(), "{args:?}"),
            Command::Extract { shard, .. } | Command::Reconstruct { shard } | Command::Average { shard }
            | Command::Roi { shard } => {
                // Any shard that parses takes a valid part of any list.
                for len in [0, 1, 982, usize::MAX] {
                    let range = shard.range(len);
                    prop_assert!(range.start <= range.end && range.end <= len, "{args:?}: {range:?}");
                }
            }
            _ => {}
        }
        match cli.validate() {
            Ok(()) => {
                let subjects = &cli.global.subjects;
                for (i, s) in subjects.iter().enumerate() {
                    prop_assert!(!subjects[..i].contains(s), "{args:?}: duplicate subject accepted");
                }
                if let Some(device) = &cli.global.device {
                    prop_assert!(
                        brain_diffuser::runtime::parse_device_name("--device", device).is_ok(),
                        "{args:?}: device accepted"
                    );
                }
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    ["--run", "--out", "--config", "--nsd", "--captions", "--models", "--device", "--subjects",
                     "--groups", "--variants", "--protocols", "BRAIN_DIFFUSER_DEVICE"]
                        .iter()
                        .any(|a| text.starts_with(a)),
                    "{args:?}: the error names no argument: {text}"
                );
                if text.starts_with("--subjects") {
                    prop_assert!(value_of(&args, "--subjects").is_some(), "{args:?}: {text}");
                }
            }
        }
    }
}

/// Well-formed command lines parse and pass validation (the checks do not refuse good input).
#[test]
fn well_formed_arguments_parse_and_validate() {
    let run = tempfile::tempdir().expect("a temporary folder");
    let (r, here) = (run.path().join("new/run"), env!("CARGO_MANIFEST_DIR"));
    let r = r.to_str().expect("UTF-8");
    let manifest = format!("{here}/Cargo.toml");
    for args in [
        vec!["prepare", "--nsd", here, "--subjects", "1,2,5,7", "--device", "cpu"],
        vec![
            "--nsd",
            here,
            "--models",
            here,
            "--captions",
            &manifest,
            "extract",
            "--shard",
            "8/8",
            "--groups",
            "clip-text,vdvae",
        ],
        vec!["--models", here, "extract", "--nsd", here, "--shard", "18446744073709551615/18446744073709551615"],
        vec!["fit", "--groups", "vdvae"],
        vec!["predict", "--subjects", "8"],
        vec!["--models", here, "reconstruct", "--shard", "1/2"],
        vec!["evaluate", "--protocols", "mindeye", "--batch-size", "1024"],
        vec!["--models", here, "ablate", "--variants", "no-vdvae", "--subject", "8"],
        vec!["--models", here, "average", "--subjects", "1,2"],
        vec!["--models", here, "roi"],
        vec!["weights-roi"],
        vec!["report", "--images", "1", "--cell", "16"],
        vec!["report", "--images", "100000", "--cell", "1024"],
        vec!["--models", here, "models"],
        vec!["demo", "--out", r, "--seed", "9223372036854775807"],
        vec!["config", "--config", &manifest],
    ] {
        let full: Vec<&str> = ["brain-diffuser", "--run", r].into_iter().chain(args.iter().copied()).collect();
        let cli = Cli::try_parse_from(&full).unwrap_or_else(|e| panic!("{full:?}: {e}"));
        cli.validate().unwrap_or_else(|e| panic!("{full:?}: {e}"));
    }
    assert!(!run.path().join("new").exists(), "validation created the run folder");
}

/// Every key of configs/paper.toml, as (section, key).
fn paper_keys() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/paper.toml");
    let text = std::fs::read_to_string(path).expect("configs/paper.toml is readable");
    let table: toml::Table = toml::from_str(&text).expect("configs/paper.toml is TOML");
    let mut keys = Vec::new();
    for (section, value) in &table {
        let toml::Value::Table(entries) = value else { panic!("{section} is not a section") };
        keys.extend(entries.keys().map(|k| (section.clone(), k.clone())));
    }
    assert!(keys.len() >= 40, "configs/paper.toml has {} keys", keys.len());
    keys
}

/// A TOML value of any type, on one line.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let scalar: BoxedStrategy<toml::Value> = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![-2000i64..=100_000, Just(0i64), Just(1), Just(-1)].prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(1.0),
            Just(0.5),
            Just(1e300),
            -10.0f64..10.0
        ]
        .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        prop_oneof![
            Just("posterior-mean".to_owned()),
            Just("mode".to_owned()),
            Just("consistent".to_owned()),
            Just("bf16".to_owned()),
            Just("two-d".to_owned()),
            Just("floc-faces".to_owned()),
            Just("none".to_owned()),
            "[ -~]{0,10}",
            ".{0,6}",
        ]
        .prop_map(toml::Value::String),
    ]
    .boxed();
    prop_oneof![
        4 => scalar.clone(),
        1 => prop::collection::vec(scalar, 0..5).prop_map(|v| toml::Value::Array(v.into_iter().collect())),
        1 => prop::collection::vec(0i64..=10, 0..6)
            .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::Integer).collect())),
        1 => prop::collection::vec(prop::sample::select(vec!["brain-diffuser", "mindeye", "x"]), 0..4)
            .prop_map(|v| toml::Value::Array(v.into_iter().map(|s| toml::Value::String(s.to_owned())).collect())),
    ]
}

/// Checks what any parse result must satisfy: an accepted configuration validates and round-trips.
fn check_parsed(text: &str, result: &Result<Config, brain_diffuser::config::ConfigError>) -> Result<(), TestCaseError> {
    if let Ok(config) = result {
        prop_assert!(config.validate().is_ok(), "{text}");
        let again = Config::from_toml_str(&config.to_toml(), "<round trip>");
        prop_assert!(again.as_ref().is_ok_and(|c| c == config), "{text}\n-> {again:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// One key of the paper's file set to any value: the result is a valid configuration, or an
    /// error that names the key.
    #[test]
    fn a_bad_value_of_any_key_is_an_error_naming_it(
        (section, key) in prop::sample::select(paper_keys()),
        value in toml_value(),
    ) {
        let text = format!("[{section}]\n{key} = {value}\n");
        let result = Config::from_toml_str(&text, "<fuzz>");
        check_parsed(&text, &result)?;
        if let Err(e) = result {
            let message = e.to_string();
            prop_assert!(
                message.contains(&format!("{section}.{key}")) || message.contains(&format!("{key} = ")),
                "{text}gave an error that does not name {section}.{key}: {message}"
            );
        }
    }

    /// Every key of the paper's file at once, each kept or set to any value: no panic, and what
    /// loads is valid and round-trips.
    #[test]
    fn any_values_for_every_key_never_panic(
        values in prop::collection::vec((any::<bool>(), toml_value()), 64),
    ) {
        let mut table = toml::Table::new();
        let paper: toml::Table = toml::from_str(include_str!("../configs/paper.toml")).expect("paper.toml");
        for ((section, key), (replace, value)) in paper_keys().into_iter().zip(values) {
            let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let original = paper[&section][&key].clone();
            if let toml::Value::Table(t) = entry {
                t.insert(key, if replace { value } else { original });
            }
        }
        let text = toml::to_string(&table).unwrap_or_default();
        let result = Config::from_toml_str(&text, "<fuzz>");
        check_parsed(&text, &result)?;
    }

    /// Arbitrary text and arbitrary TOML tables (unknown sections and keys, nesting): no panic; an
    /// unknown key is an error that names it.
    #[test]
    fn arbitrary_toml_never_panics(
        text in ".{0,200}",
        sections in prop::collection::btree_map(
            prop_oneof![Just("data".to_owned()), Just("diffusion".to_owned()), "[a-z_]{1,8}"],
            prop::collection::btree_map("[a-z_]{1,12}", toml_value(), 0..4),
            0..4,
        ),
    ) {
        let result = Config::from_toml_str(&text, "<fuzz>");
        check_parsed(&text, &result)?;
        let known = paper_keys();
        let mut table = toml::Table::new();
        for (section, entries) in &sections {
            table.insert(section.clone(), toml::Value::Table(entries.clone().into_iter().collect()));
        }
        let text = toml::to_string(&table).unwrap_or_default();
        let result = Config::from_toml_str(&text, "<fuzz>");
        check_parsed(&text, &result)?;
        let sections_known = ["data", "vdvae", "clip", "regression", "diffusion", "evaluation", "roi", "seeds"];
        let is_known = |s: &str, k: &str| known.iter().any(|(ks, kk)| ks == s && kk == k);
        let mut unknown = Vec::new();
        let mut known_only = toml::Table::new();
        for (section, entries) in &sections {
            if !sections_known.contains(&section.as_str()) {
                unknown.push(section.clone());
                continue;
            }
            let mut kept = toml::Table::new();
            for (key, value) in entries {
                if is_known(section, key) {
                    kept.insert(key.clone(), value.clone());
                } else {
                    unknown.push(key.clone());
                }
            }
            known_only.insert(section.clone(), toml::Value::Table(kept));
        }
        let known_text = toml::to_string(&known_only).unwrap_or_default();
        if !unknown.is_empty() && Config::from_toml_str(&known_text, "<fuzz>").is_ok() {
            // Only the unknown keys are wrong: the error names one of them.
            let message = result.expect_err("an unknown key is refused").to_string();
            prop_assert!(
                unknown.iter().any(|name| message.contains(&format!("`{name}`"))),
                "{text}: unknown {unknown:?}, but the error names none: {message}"
            );
        }
    }
}
