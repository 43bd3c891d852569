//! Tokenizer ids against transformers' `CLIPTokenizer` (fixture written by
//! `tools/clip/make_fixtures.py --what tokenizer`), with the real OpenAI vocabulary and with a
//! small vocabulary in Hugging Face's vocab.json + merges.txt format.

use std::path::{Path, PathBuf};

use clip::{CONTEXT_LENGTH, ClipTokenizer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected_ids.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

fn compare(tok: &ClipTokenizer, captions: &[&str], want: &[Vec<u32>]) {
    assert_eq!(captions.len(), want.len());
    let mut mismatches = Vec::new();
    for (c, w) in captions.iter().zip(want) {
        let got = tok.encode(c).unwrap();
        if &got != w {
            mismatches.push(format!("{c:?}:\n  got  {got:?}\n  want {w:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn openai_vocabulary_matches_transformers_on_varied_captions() {
    let e = expected();
    let captions: Vec<&str> = e["captions"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let want = rows(&e["full_vocab_ids"]);
    assert!(captions.len() >= 200);
    // the set covers truncation: some captions are longer than 77 tokens before truncation
    let tok = ClipTokenizer::from_bpe_gz(fixtures().join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!((tok.bos_id(), tok.eos_id()), (49406, 49407));
    let mut untruncated = tok.clone();
    untruncated.set_context_length(1000).unwrap();
    let long = captions
        .iter()
        .filter(|c| untruncated.encode(c).unwrap().iter().rposition(|&i| i != 49407).unwrap_or(0) + 2 > CONTEXT_LENGTH);
    assert!(long.count() >= 5, "fixture should contain captions over 77 tokens");
    compare(&tok, &captions, &want);
    for w in &want {
        assert_eq!(w.len(), CONTEXT_LENGTH);
        assert_eq!(w[0], 49406);
        assert!(w.contains(&49407));
    }
}

#[test]
fn hugging_face_vocab_and_merges_files_match_transformers() {
    let e = expected();
    let captions: Vec<&str> = e["captions"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let want = rows(&e["small_vocab_ids"]);
    let dir = fixtures().join("small_vocab");
    let tok = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(u64::from(tok.bos_id()), e["small_vocab_bos"].as_u64().unwrap());
    assert_eq!(u64::from(tok.eos_id()), e["small_vocab_eos"].as_u64().unwrap());
    compare(&tok, &captions, &want);
}

#[test]
fn known_ids_of_the_real_vocabulary() {
    // Closed-form facts of CLIP's vocabulary: "a</w>" is byte 'a' + 256 in the word-final half.
    let tok = ClipTokenizer::from_bpe_gz(fixtures().join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let ids = tok.encode("").unwrap();
    assert_eq!(ids, [vec![49406u32], vec![49407; 76]].concat());
    let table_index_of_a = u32::from(b'a') - u32::from(b'!');
    assert_eq!(tok.encode("A").unwrap()[..3], [49406, table_index_of_a + 256, 49407]);
    let batch = tok.encode_tensor(&["a dog", ""]).unwrap();
    assert_eq!(batch.size(), [2, 77]);
}

#[test]
fn bad_vocabulary_files_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("vocab.json"), r#"{"a": 0}"#).unwrap();
    std::fs::write(tmp.path().join("merges.txt"), "#version: 0.2\n").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("<|startoftext|>"), "{err}");
    std::fs::write(tmp.path().join("merges.txt"), "#version: 0.2\nabc\n").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("merges.txt") && err.contains("line 2"), "{err}");
    assert!(ClipTokenizer::from_dir(tmp.path().join("nothing")).is_err());
}

#[test]
fn hugging_face_tokenizer_json_matches_transformers() {
    let e = expected();
    let captions: Vec<&str> = e["captions"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let want = rows(&e["small_vocab_ids"]);
    let tok = ClipTokenizer::from_dir(fixtures().join("small_tokenizer_json")).unwrap();
    assert_eq!(u64::from(tok.eos_id()), e["small_vocab_eos"].as_u64().unwrap());
    compare(&tok, &captions, &want);
}
