//! The API from the command line's side: `orders`, `events`,
//! `dead-letters` and `sources` asking a running orderwatch instead of the
//! store it holds. Errors are plain and never carry the token: a 401 says
//! it was refused, a connection that fails names the URL.

use crate::secret::Secret;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Each call's limit: the API answers from the store, within a moment.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiClient {
    /// `http://host:port`, without the `/api/v1`.
    base: String,
    token: Secret,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the orderwatch API at {url} refused the token (401): check --token, $ORDERWATCH_API_TOKEN or the config's api_token"
    )]
    Refused { url: String },
    #[error(
        "cannot reach the orderwatch API at {url}: {why} (is `orderwatch run` serving there, with api_token set?)"
    )]
    Unreachable { url: String, why: String },
    /// The API's own 404, with its message (`no source named ...`).
    #[error("{0}")]
    NotFound(String),
    #[error("the orderwatch API at {url} answered HTTP {status}: {message}")]
    Failed {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
}

impl ApiClient {
    /// A client of the orderwatch at `url` (`http://127.0.0.1:9464`, with
    /// or without `/api/v1`).
    pub fn new(url: &str, token: Secret) -> Result<ApiClient, ClientError> {
        let trimmed = url.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        let parsed = url::Url::parse(trimmed).map_err(|e| {
            ClientError::Usage(format!(
                "--url {trimmed:?} is not a URL ({e}); e.g. http://127.0.0.1:9464"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "--url must be an http or https URL, e.g. http://127.0.0.1:9464 (got {trimmed})"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(ApiClient {
            base: trimmed.to_owned(),
            token,
            http,
        })
    }

    /// `GET /api/v1{path}` with `query`, its JSON answer.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let request = self.http.get(self.url(path)).query(query);
        self.send(request).await
    }

    /// `POST /api/v1{path}` with a JSON body, its JSON answer.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ClientError> {
        let request = self.http.post(self.url(path)).json(body);
        self.send(request).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let answer = request
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                why: transport(e),
            })?;
        let status = answer.status().as_u16();
        if status == 401 {
            return Err(ClientError::Refused {
                url: self.base.clone(),
            });
        }
        let bytes = answer.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            why: transport(e),
        })?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                });
            if status == 404 && !message.is_empty() {
                return Err(ClientError::NotFound(crate::secret::redact(&message)));
            }
            return Err(ClientError::Failed {
                url: self.base.clone(),
                status,
                message: crate::secret::redact(&message),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Failed {
            url: self.base.clone(),
            status,
            message: format!("an answer that is not the API's JSON ({e})"),
        })
    }
}

/// What failed on the way, on one line, without the URL (the message names
/// the base URL already, and a path could carry an order id).
fn transport(e: reqwest::Error) -> String {
    crate::secret::redact(&crate::deliver::transport_error(e))
}
