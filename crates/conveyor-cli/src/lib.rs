//! `conveyorctl`: the operator's command line.
//!
//! - `bootstrap --tenant NAME` creates a tenant and its first admin API key, talking to Redis
//!   directly through the store (there is no key yet to call the API with), and prints the
//!   secret once.
//! - Everything else calls the HTTP API with `CONVEYOR_API_URL` and `CONVEYOR_API_KEY`: queue
//!   statistics, dead letters (list, show, retry, purge) and API keys (list, create, revoke).
//!   Answers are printed as JSON on stdout; an error answer prints its code and message on
//!   stderr and the command exits with status 1.
//!
//! The binary only parses arguments and calls [`run`].

use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use conveyor_store::{ApiRole, EncryptionKey, Store, StoreConfig};
use serde_json::{Value, json};

/// Why a command failed; each variant maps to what the operator does next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A required setting is missing or malformed: fix the environment or the arguments.
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error body: its code and message.
    #[error("{status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The API or Redis could not be reached or answered garbage: retry, or check the URL.
    #[error("{0:#}")]
    Transport(anyhow::Error),
}

/// `conveyorctl`: operate a Conveyor deployment.
#[derive(Debug, Parser)]
#[command(name = "conveyorctl", version, about)]
pub struct Cli {
    /// The API's base URL (for every command but `bootstrap`).
    #[arg(
        long,
        env = "CONVEYOR_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// An API key (for every command but `bootstrap`). Prefer the variable: arguments show in
    /// process lists.
    #[arg(long, env = "CONVEYOR_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a tenant and its first admin API key directly in Redis; prints the key once.
    Bootstrap {
        /// The tenant's name.
        #[arg(long)]
        tenant: String,
        /// A label for the key.
        #[arg(long, default_value = "bootstrap admin")]
        key_name: String,
        /// The Redis server.
        #[arg(
            long,
            env = "CONVEYOR_REDIS_URL",
            default_value = "redis://127.0.0.1:6379/"
        )]
        redis_url: String,
    },
    /// Re-encrypt every stored credential under the active encryption key (the middle step of a
    /// key rotation), directly in Redis. Reads the keys from `CONVEYOR_ENCRYPTION_KEYS`, the
    /// active key first, as the API and workers do.
    Reencrypt {
        /// The Redis server.
        #[arg(
            long,
            env = "CONVEYOR_REDIS_URL",
            default_value = "redis://127.0.0.1:6379/"
        )]
        redis_url: String,
        /// The encryption keys (`id:base64,...`, active first).
        #[arg(long, env = "CONVEYOR_ENCRYPTION_KEYS", hide_env_values = true)]
        encryption_keys: String,
    },
    /// Job counts of every queue.
    Stats,
    /// Dead-lettered jobs.
    Dead {
        /// What to do with them.
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// The tenant's API keys (admin keys only).
    Keys {
        /// What to do with them.
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Dead letter commands.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs, newest first.
    List {
        /// The queue: syncs or webhooks.
        #[arg(long, default_value = "syncs")]
        queue: String,
        /// Only jobs whose last error has this kind.
        #[arg(long)]
        error_kind: Option<String>,
        /// Entries to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one dead job with its payload and errors.
    Show {
        /// The job id (`job_...`).
        job_id: String,
        /// The queue: syncs or webhooks.
        #[arg(long, default_value = "syncs")]
        queue: String,
    },
    /// Move dead jobs back to their queue.
    Retry(Selection),
    /// Delete dead jobs for good.
    Purge(Selection),
}

/// Which dead jobs a retry or purge acts on: exactly one of the selectors.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "selector")]
pub struct Selection {
    /// One job (`job_...`).
    #[arg(long, group = "selector")]
    pub job: Option<String>,
    /// Every job whose last error has this kind.
    #[arg(long, group = "selector")]
    pub error_kind: Option<String>,
    /// Every job that died longer ago than this (`90s`, `30m`, `2h`, `7d`).
    #[arg(long, group = "selector")]
    pub older_than: Option<String>,
    /// Every dead job of the queue.
    #[arg(long, group = "selector")]
    pub all: bool,
    /// The queue: syncs or webhooks.
    #[arg(long, default_value = "syncs")]
    pub queue: String,
}

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List keys (prefixes only, never secrets).
    List,
    /// Create a key; prints its secret once.
    Create {
        /// A label.
        #[arg(long)]
        name: String,
        /// admin, developer or operator.
        #[arg(long)]
        role: String,
    },
    /// Revoke a key (`key_...`).
    Revoke {
        /// The key's id.
        key_id: String,
    },
}

impl Selection {
    fn body(&self) -> Result<Value, CliError> {
        Ok(if let Some(job) = &self.job {
            json!({"select": "one", "job_id": job})
        } else if let Some(kind) = &self.error_kind {
            json!({"select": "error_kind", "error_kind": kind})
        } else if let Some(age) = &self.older_than {
            let age = conveyor_runtime::config::parse_duration(age).ok_or_else(|| {
                CliError::Usage(format!("--older-than `{age}`: expected 90s, 30m, 2h or 7d"))
            })?;
            json!({"select": "older_than", "older_than_secs": age.as_secs()})
        } else {
            json!({"select": "all"})
        })
    }
}

/// Runs one command, writing its answer to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let api = || Api::new(&cli.api_url, cli.api_key.as_deref());
    let answer = match &cli.command {
        Command::Bootstrap {
            tenant,
            key_name,
            redis_url,
        } => return bootstrap(tenant, key_name, redis_url, out).await,
        Command::Reencrypt {
            redis_url,
            encryption_keys,
        } => return reencrypt(redis_url, encryption_keys, out).await,
        Command::Stats => {
            api()?
                .call(reqwest::Method::GET, "/v1/queues", None)
                .await?
        }
        Command::Dead { command } => match command {
            DeadCommand::List {
                queue,
                error_kind,
                offset,
                limit,
            } => {
                let mut path = format!("/v1/queues/{queue}/dead?offset={offset}&limit={limit}");
                if let Some(kind) = error_kind {
                    path.push_str("&error_kind=");
                    path.extend(form_encode(kind));
                }
                api()?.call(reqwest::Method::GET, &path, None).await?
            }
            DeadCommand::Show { job_id, queue } => {
                let path = format!("/v1/queues/{queue}/dead/{job_id}");
                api()?.call(reqwest::Method::GET, &path, None).await?
            }
            DeadCommand::Retry(selection) => {
                let path = format!("/v1/queues/{}/dead/retry", selection.queue);
                let body = selection.body()?;
                api()?
                    .call(reqwest::Method::POST, &path, Some(body))
                    .await?
            }
            DeadCommand::Purge(selection) => {
                let path = format!("/v1/queues/{}/dead/purge", selection.queue);
                let body = selection.body()?;
                api()?
                    .call(reqwest::Method::POST, &path, Some(body))
                    .await?
            }
        },
        Command::Keys { command } => match command {
            KeysCommand::List => {
                api()?
                    .call(reqwest::Method::GET, "/v1/api_keys?limit=100", None)
                    .await?
            }
            KeysCommand::Create { name, role } => {
                let body = json!({"name": name, "role": role});
                api()?
                    .call(reqwest::Method::POST, "/v1/api_keys", Some(body))
                    .await?
            }
            KeysCommand::Revoke { key_id } => {
                let path = format!("/v1/api_keys/{key_id}");
                api()?.call(reqwest::Method::DELETE, &path, None).await?
            }
        },
    };
    let text =
        serde_json::to_string_pretty(&answer).map_err(|err| CliError::Transport(err.into()))?;
    writeln!(out, "{text}").map_err(|err| CliError::Transport(err.into()))
}

fn form_encode(text: &str) -> impl Iterator<Item = char> + '_ {
    text.bytes().flat_map(|byte| {
        let plain = byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte);
        let encoded = if plain {
            vec![byte as char]
        } else {
            format!("%{byte:02X}").chars().collect()
        };
        encoded.into_iter()
    })
}

async fn bootstrap(
    tenant_name: &str,
    key_name: &str,
    redis_url: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if tenant_name.trim().is_empty() {
        return Err(CliError::Usage("--tenant must not be empty".into()));
    }
    // Tenants and API keys are not encrypted; the store handle needs a key all the same, so a
    // random one is used that encrypts nothing.
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let key =
        EncryptionKey::new("bootstrap", bytes).map_err(|err| CliError::Transport(err.into()))?;
    let store = tokio::time::timeout(
        Duration::from_secs(10),
        Store::connect(redis_url, StoreConfig::new(key)),
    )
    .await
    .map_err(|_| CliError::Transport(anyhow::anyhow!("connecting to Redis timed out")))?
    .map_err(|err| CliError::Transport(anyhow::Error::new(err).context("connecting to Redis")))?;
    let tenant = store
        .create_tenant(tenant_name)
        .await
        .map_err(|err| CliError::Transport(err.into()))?;
    let created = store
        .create_api_key(&tenant.id, ApiRole::Admin, key_name)
        .await
        .map_err(|err| CliError::Transport(err.into()))?;
    let text = format!(
        "tenant_id: {}\napi_key_id: {}\napi_key: {}\n\nThe key is shown only now; keep it in a secret store.",
        tenant.id,
        created.key.id,
        created.secret.expose()
    );
    writeln!(out, "{text}").map_err(|err| CliError::Transport(err.into()))
}

async fn reencrypt(redis_url: &str, keys: &str, out: &mut impl Write) -> Result<(), CliError> {
    let keys = EncryptionKey::parse_list(keys)
        .map_err(|err| CliError::Usage(format!("CONVEYOR_ENCRYPTION_KEYS: {err}")))?;
    let config = StoreConfig::from_keys(keys)
        .map_err(|err| CliError::Usage(format!("CONVEYOR_ENCRYPTION_KEYS: {err}")))?;
    let store = tokio::time::timeout(Duration::from_secs(10), Store::connect(redis_url, config))
        .await
        .map_err(|_| CliError::Transport(anyhow::anyhow!("connecting to Redis timed out")))?
        .map_err(|err| {
            CliError::Transport(anyhow::Error::new(err).context("connecting to Redis"))
        })?;
    let report = store
        .reencrypt_all()
        .await
        .map_err(|err| CliError::Transport(err.into()))?;
    let failed: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "examined: {}\nreencrypted: {}\nskipped_concurrent: {}\nfailed: {}",
        report.examined,
        report.reencrypted,
        report.skipped_concurrent,
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.join(", ")
        }
    )
    .map_err(|err| CliError::Transport(err.into()))?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Transport(anyhow::anyhow!(
            "{} credentials could not be decrypted with the configured keys; they were left as they are",
            failed.len()
        )))
    }
}

/// The HTTP API with a key.
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(base: &str, key: Option<&str>) -> Result<Self, CliError> {
        let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
            CliError::Usage("set CONVEYOR_API_KEY (or --api-key) to an API key".into())
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| CliError::Transport(err.into()))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| {
            CliError::Transport(anyhow::Error::new(err).context(format!("calling {url}")))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| CliError::Transport(err.into()))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|err| {
                CliError::Transport(anyhow::anyhow!(
                    "{url} answered {status} with non-JSON: {err}"
                ))
            })?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(CliError::Api {
                status: status.as_u16(),
                code: value["error"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
                message: value["error"]["message"].as_str().unwrap_or("").to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_become_request_bodies() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["conveyorctl", "dead", "retry"].iter().chain(args).copied())
                    .unwrap();
            match cli.command {
                Command::Dead {
                    command: DeadCommand::Retry(selection),
                } => selection.body().unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse(&["--all"])["select"], "all");
        assert_eq!(parse(&["--job", "job_x"])["job_id"], "job_x");
        assert_eq!(parse(&["--older-than", "2h"])["older_than_secs"], 7_200);
        assert_eq!(parse(&["--error-kind", "timeout"])["error_kind"], "timeout");
        assert!(Cli::try_parse_from(["conveyorctl", "dead", "retry"]).is_err());
        assert!(
            Cli::try_parse_from(["conveyorctl", "dead", "purge", "--all", "--job", "j"]).is_err()
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(form_encode("a b&c").collect::<String>(), "a%20b%26c");
    }
}
