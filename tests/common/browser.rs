//! The report page in a real browser: headless Chromium loads `index.html` through `file://`, and the
//! page's own check (`#image-check`, written on the `load` event from every `<img>`'s
//! `naturalWidth`) and a screenshot come back.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium binary on `PATH`, or why there is none. `.ci/run` installs Debian's `chromium`.
pub fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output();
        if let Ok(out) = found {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !path.is_empty() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    Err("no chromium, chromium-browser or google-chrome on PATH (install it: `apt-get install -y chromium`)".into())
}

/// Runs headless Chromium on `page` with `args` and a profile folder of its own; returns stdout.
fn headless(browser: &Path, page: &Path, args: &[String], profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().expect("the page exists").display());
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=10000")
        .args(args)
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed on {url}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the browser saw of a page after its `load` event.
#[derive(Debug)]
pub struct Loaded {
    /// The DOM as serialised after load (`--dump-dom`).
    pub dom: String,
    /// `data-images` of `#image-check`: the `<img>` elements the page's script counted.
    pub images: usize,
    /// `data-broken` of `#image-check`: those that did not load (`naturalWidth` 0).
    pub broken: usize,
    /// Every `<img src>` of the DOM, in page order.
    pub sources: Vec<String>,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(tag[start..].split('"').next()?.to_owned())
}

/// Loads `page` and reads the counts the page's script wrote into `#image-check`.
pub fn load(browser: &Path, page: &Path, profile: &Path) -> Loaded {
    let dom = headless(browser, page, &["--dump-dom".to_owned()], profile);
    let check = dom
        .split('<')
        .find(|t| t.starts_with("p ") && t.contains("id=\"image-check\""))
        .unwrap_or_else(|| panic!("no #image-check in the DOM:\n{dom}"))
        .to_owned();
    let count = |name: &str| -> usize {
        attribute(&check, name)
            .unwrap_or_else(|| panic!("#image-check has no {name} (did the load script run?): <{check}"))
            .parse()
            .expect("a count")
    };
    let sources = dom
        .split('<')
        .filter(|t| t.starts_with("img "))
        .map(|t| attribute(t, "src").expect("every image has a src"))
        .collect();
    Loaded { images: count("data-images"), broken: count("data-broken"), sources, dom }
}

/// A `width` x `height` screenshot of `page`, decoded.
pub fn screenshot(browser: &Path, page: &Path, profile: &Path, width: u32, height: u32) -> image::RgbImage {
    let shot = profile.join("screenshot.png");
    headless(
        browser,
        page,
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".into(),
        ],
        profile,
    );
    image::open(&shot).expect("chromium wrote a PNG screenshot").to_rgb8()
}

/// Standard deviation of the luma of `img` (0 for a blank picture).
pub fn luma_sd(img: &image::RgbImage) -> f64 {
    let luma: Vec<f64> =
        img.pixels().map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect();
    let mean = luma.iter().sum::<f64>() / luma.len().max(1) as f64;
    (luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len().max(1) as f64).sqrt()
}
