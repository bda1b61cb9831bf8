//! Downloads from the Hugging Face hub with hf-hub: `hf:` specs, and the
//! first source a preset is fetched from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};

use super::ModelFiles;
use super::fetch::FetchSources;
use super::install::install_verified;
use super::preset::Preset;

/// How long the hub may take to accept a TCP connection before we give up on
/// it and try the next source.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// `ORG/REPO[:FILE]` from the hub. Without FILE: the repo's single GGUF, or
/// its safetensors + config.json + tokenizer.json.
pub(super) fn resolve_hub(hub_spec: &str) -> Result<ModelFiles> {
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

pub(super) fn fetch_from_hub(
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
