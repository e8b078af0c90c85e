//! The rules an edit is compared with: another folder's, or the folder's own at a git revision.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::config::Config;
use crate::diagnostics::Problems;
use crate::error::{Error, Result};
use crate::project::{Project, Rulebook};

/// The folder's feeds and journal with another version of its rules: the
/// config (`relance.yaml`, all defaults when absent), the policies, scripts
/// and holds of the rules folder it names and the templates of its
/// templates folder. Only the rules differ, so every difference a
/// comparison shows is the edit's.
pub struct Baseline {
    /// The current project with the baseline's config and rulebook; its
    /// `problems` are the baseline's (a comparison with rules that do not
    /// load means nothing: the caller refuses it).
    pub project: Project,
    /// The files of a git revision, written out to be loaded; removed with
    /// the baseline.
    _files: Option<tempfile::TempDir>,
}

impl Baseline {
    /// Loads `spec`: a folder, or `git:REV` for the files of `dir` (the
    /// current folder) at revision REV of its git repository.
    pub fn load(spec: &str, dir: &Path, current: &Project) -> Result<Baseline> {
        let refuse = |message: String| Error::Baseline {
            spec: spec.to_string(),
            message,
        };
        let Some(rev) = spec.strip_prefix("git:") else {
            let folder = Path::new(spec);
            if !folder.is_dir() {
                return Err(refuse(format!(
                    "{}: folder not found (expected a relance folder, or git:REV for a revision \
                     of this one)",
                    folder.display()
                )));
            }
            return Ok(Baseline {
                project: with_rules_of(folder, current)?,
                _files: None,
            });
        };
        let files = tempfile::Builder::new()
            .prefix("relance-baseline-")
            .tempdir()
            .map_err(|e| refuse(format!("cannot create a temporary folder: {e}")))?;
        let folder = Git::new(dir, rev)
            .and_then(|git| git.write_folder(files.path()))
            .map_err(refuse)?;
        // Problems name the revision's files as git does (`HEAD:rules/a.yaml`),
        // not the temporary copy a finance manager never sees.
        let relabel = |problems: &mut Problems| relabel(problems, files.path(), rev);
        let project = match with_rules_of(&folder, current) {
            Ok(mut project) => {
                relabel(&mut project.problems);
                project
            }
            Err(Error::Problem(problem)) => {
                let mut problems = Problems(vec![*problem]);
                relabel(&mut problems);
                return Err(Error::Problem(Box::new(problems.0.remove(0))));
            }
            Err(e) => return Err(e),
        };
        Ok(Baseline {
            project,
            _files: Some(files),
        })
    }
}

/// `current` with the config and rulebook of `folder`.
fn with_rules_of(folder: &Path, current: &Project) -> Result<Project> {
    let config = Config::load(folder, None)?;
    let mut problems = config.validate();
    let (rulebook, rule_problems) = Rulebook::load(&config);
    problems.extend(rule_problems);
    let mut project = Project {
        config,
        rulebook: Arc::new(rulebook),
        problems,
        ..current.clone()
    };
    // The baseline's promises to pay in rules/holds.yaml, not the folder's.
    project.apply_promises();
    Ok(project)
}

/// Names the files under `root` as `REV:path` (their path in the repository).
fn relabel(problems: &mut Problems, root: &Path, rev: &str) {
    let root_text = format!("{}/", root.display());
    for problem in &mut problems.0 {
        if let Ok(path) = problem.location.file.strip_prefix(root) {
            problem.location.file = PathBuf::from(format!("{rev}:{}", path.display()));
        }
        problem.message = problem.message.replace(&root_text, &format!("{rev}:"));
    }
}

/// The `git` command line run in the current folder, at one commit.
struct Git<'a> {
    dir: &'a Path,
    /// The commit `rev` names, resolved once so every file comes from it.
    commit: String,
    /// The folder's path in the repository (`clients/acme/`, or empty).
    prefix: String,
}

/// One file of a tree: its blob and its path from the repository's root.
struct Blob {
    id: String,
    path: PathBuf,
}

impl<'a> Git<'a> {
    /// Checks that git is there, that `dir` is in a repository and that
    /// `rev` names a commit of it.
    fn new(dir: &'a Path, rev: &'a str) -> Result<Git<'a>, String> {
        if rev.is_empty() || rev.starts_with('-') {
            return Err(format!(
                "expected a revision after git: (git:HEAD, git:HEAD~1, git:v1.2, git:main), \
                 found {rev:?}"
            ));
        }
        let mut git = Git {
            dir,
            commit: String::new(),
            prefix: String::new(),
        };
        // Whether git is there at all, before what it says of the folder.
        git.output(&["--version"])?;
        let prefix = git
            .output(&["rev-parse", "--show-prefix"])
            .map_err(|e| format!("{} is not in a git repository: {e}", dir.display()))?;
        let commit = git
            .output(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
            .map_err(|e| format!("unknown revision {rev:?}: {e}"))?;
        git.prefix = String::from_utf8_lossy(&prefix).trim().to_string();
        git.commit = String::from_utf8_lossy(&commit).trim().to_string();
        Ok(git)
    }

    /// Writes the folder's `relance.yaml` at the commit, then the rules and
    /// templates folders that config names, under `root` as they are in the
    /// repository; returns where the folder is under `root`. A config that
    /// does not load is left for the loading of the baseline to report.
    fn write_folder(&self, root: &Path) -> Result<PathBuf, String> {
        let folder = root.join(&self.prefix);
        std::fs::create_dir_all(&folder)
            .map_err(|e| format!("{}: cannot create: {e}", folder.display()))?;
        self.write(root, &self.blobs(&["relance.yaml"])?)?;
        let Ok(config) = Config::load(&folder, None) else {
            return Ok(folder);
        };
        let mut wanted = Vec::new();
        for (key, path) in [("rules", &config.rules), ("templates", &config.templates)] {
            if path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                return Err(format!(
                    "{key}: {} is outside the folder: git:REV takes the files of the folder \
                     only (compare with a folder instead: --baseline DIR)",
                    path.display()
                ));
            }
            wanted.push(path.to_string_lossy().into_owned());
        }
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        self.write(root, &self.blobs(&wanted)?)?;
        Ok(folder)
    }

    /// The files under `paths` (relative to the current folder) at the commit.
    fn blobs(&self, paths: &[&str]) -> Result<Vec<Blob>, String> {
        let mut args = vec!["ls-tree", "-r", "-z", "--full-name", &self.commit, "--"];
        args.extend(paths);
        let listing = self.output(&args)?;
        let mut blobs = Vec::new();
        for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            // `<mode> <type> <id>\t<path>`: files only (no symbolic link, no submodule).
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            if let [mode, "blob", id] = meta.split(' ').collect::<Vec<_>>()[..]
                && mode != "120000"
            {
                blobs.push(Blob {
                    id: id.to_string(),
                    path: PathBuf::from(path),
                });
            }
        }
        Ok(blobs)
    }

    /// Writes each blob under `root` at its path, read in one `git cat-file --batch`.
    fn write(&self, root: &Path, blobs: &[Blob]) -> Result<(), String> {
        if blobs.is_empty() {
            return Ok(());
        }
        let mut child = self
            .command(&["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.not_run(&e))?;
        let ids: String = blobs.iter().map(|b| format!("{}\n", b.id)).collect();
        let mut stdin = child.stdin.take();
        // Written on a thread: git answers while it reads, and a full pipe
        // both ways would block both.
        let feeder = std::thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(ids.as_bytes());
            }
        });
        let mut out = BufReader::new(child.stdout.take().ok_or("git cat-file: no output")?);
        let mut result = Ok(());
        for blob in blobs {
            result = read_blob(&mut out, blob, root);
            if result.is_err() {
                break;
            }
        }
        drop(out);
        let _ = feeder.join();
        let status = child.wait_with_output().map_err(|e| e.to_string())?;
        if !status.status.success() && result.is_ok() {
            return Err(git_says(&status.stderr));
        }
        result
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command.arg("-C").arg(self.dir).args(args);
        command
    }

    /// What a git command printed; its error message when it fails.
    fn output(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let output = self.command(args).output().map_err(|e| self.not_run(&e))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(git_says(&output.stderr))
        }
    }

    fn not_run(&self, e: &std::io::Error) -> String {
        if e.kind() == std::io::ErrorKind::NotFound {
            "git:REV needs the git command line tool: apt-get install git".to_string()
        } else {
            format!("cannot run git: {e}")
        }
    }
}

/// Reads one blob of `git cat-file --batch` (`<id> blob <size>\n<bytes>\n`)
/// and writes it under `root`.
fn read_blob(out: &mut impl BufRead, blob: &Blob, root: &Path) -> Result<(), String> {
    let mut header = String::new();
    out.read_line(&mut header).map_err(|e| e.to_string())?;
    let size = match header.split_whitespace().collect::<Vec<_>>()[..] {
        [_, "blob", size] => size.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("git cat-file: unexpected answer {:?}", header.trim()))?;
    let mut bytes = Vec::new();
    out.take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    bytes.truncate(size as usize);
    let path = root.join(&blob.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Git's own words on stderr, on one line.
fn git_says(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("git says: {}", lines.join(" "))
}
