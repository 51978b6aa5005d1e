//! Where the Kubernetes binaries are: built by `hack/kube-bins.sh` into a versioned cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// Paths of the binaries a local control plane runs.
#[derive(Clone, Debug)]
pub struct KubeBins {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kubectl: PathBuf,
}

impl KubeBins {
    /// Uses `$SVCPLANE_KUBE_BIN_DIR` when set, else runs `hack/kube-bins.sh` (which returns
    /// at once when the binaries are already built) and uses the directory it prints.
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os("SVCPLANE_KUBE_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => build()?,
        };
        let bins = Self::in_dir(&dir);
        for path in [
            &bins.etcd,
            &bins.kube_apiserver,
            &bins.kube_controller_manager,
            &bins.kubectl,
        ] {
            anyhow::ensure!(
                path.is_file(),
                "{} is missing: run hack/kube-bins.sh",
                path.display()
            );
        }
        Ok(bins)
    }

    fn in_dir(dir: &Path) -> Self {
        Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kubectl: dir.join("kubectl"),
        }
    }
}

fn build() -> Result<PathBuf> {
    // The checkout cargo runs this from (a shared target directory may hold this code as
    // built from another checkout, whose path `env!` would give), else the one built from.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let script = dir.join("../hack/kube-bins.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({})",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout)?;
    let dir = stdout
        .lines()
        .last()
        .context("hack/kube-bins.sh printed no directory")?;
    Ok(PathBuf::from(dir))
}
