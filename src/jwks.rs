//! The signing keys of an identity provider (Auth0, Keycloak, Cognito, ...), published as a
//! JWKS: user tokens signed with RS*, PS*, ES* or EdDSA are checked against them.
//!
//! Keys are cached. An unknown `kid` (the provider rotated its keys) fetches the set again, but
//! at most once per `min_refresh_interval`, so tokens with made-up ids cannot make the service
//! hammer the provider. A request whose key comes from a set older than `max_age` has the set
//! fetched again in the background (it is not held up itself), so a key the provider withdrew
//! stops working once such a fetch succeeds. While the provider cannot be reached, the keys fetched last stay in use,
//! for up to a day; a token whose key was never fetched then gets a 503.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A JWKS larger than this is refused (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a token with a `kid` not yet fetched waits for the provider; then 503.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);
/// Keys fetched this long ago are no longer used, whether or not the provider can be reached.
const MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Fetched over HTTP(S), like `https://example.eu.auth0.com/.well-known/jwks.json`.
    Url(String),
    /// Read from a file holding a JWKS.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// The set is fetched again once it is this old.
    pub max_age: Duration,
    /// An unknown `kid` fetches the set at most this often.
    pub min_refresh_interval: Duration,
}

/// Why no key checks a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the token's key `{0}` is not among the identity provider's keys")]
    Unknown(String),
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    /// The provider's keys could not be fetched, and none fetched before has this `kid`.
    #[error("the identity provider's keys are unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// Why the last fetch failed; None once one succeeds.
    last_error: Option<String>,
}

pub struct Jwks {
    source: KeySource,
    options: JwksOptions,
    client: reqwest::Client,
    cache: RwLock<Cache>,
    /// One fetch at a time; callers that waited for it use its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// Fetches the keys once. A file must hold a usable set (a mistake in configuration); an
    /// unreachable URL is only logged, since the provider may come back after the service.
    pub async fn load(source: KeySource, options: JwksOptions) -> Result<Self, String> {
        let jwks = Self {
            source,
            options,
            client: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                // The keys decide who every user is: over plain http anyone on the way could
                // swap them, and the configured URL's own check would be for nothing.
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() == "https" {
                        reqwest::redirect::Policy::default().redirect(attempt)
                    } else {
                        attempt.error("a redirect to a URL that is not https")
                    }
                }))
                .build()
                .map_err(|e| e.to_string())?,
            cache: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
        };
        match (jwks.refresh().await, &jwks.source) {
            (Err(error), KeySource::File(path)) => {
                return Err(format!("JWT_JWKS_FILE {}: {error}", path.display()))
            }
            (Err(error), KeySource::Url(url)) => {
                tracing::warn!(%url, %error, "the identity provider's keys are unavailable for now; tokens signed by it get 503 until they are")
            }
            (Ok(count), _) => tracing::info!(keys = count, "identity provider keys loaded"),
        }
        Ok(jwks)
    }

    /// The key that checks a token with this `kid` and `alg`. A cached key answers at once,
    /// however slow the provider (a set past `max_age` is fetched again in the background); only
    /// an unknown `kid` waits for a fetch, at most [`UNKNOWN_KID_WAIT`].
    pub async fn key(self: &Arc<Self>, kid: &str, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        let (cached, fresh) = {
            let cache = self.read();
            (
                usable(&cache, kid),
                cache.age().is_some_and(|age| age < self.options.max_age),
            )
        };
        if let Some(key) = cached {
            if !fresh {
                self.refresh_in_background();
            }
            return key.checking(alg);
        }
        // In a task of its own: a fetch this request gives up waiting for still completes and
        // fills the cache for the next one.
        let (this, wanted) = (Arc::clone(self), kid.to_owned());
        let fetch = tokio::spawn(async move { this.fetch_for(&wanted).await });
        match tokio::time::timeout(UNKNOWN_KID_WAIT, fetch).await {
            Ok(Ok(found)) => found?.checking(alg),
            Ok(Err(join)) => Err(KeyError::Unavailable(join.to_string())),
            Err(_) => Err(KeyError::Unavailable(format!(
                "no answer from the identity provider within {UNKNOWN_KID_WAIT:?}"
            ))),
        }
    }

    /// Fetches the set for a `kid` it lacks, unless a fetch was made lately (then the answer
    /// stands: made-up ids cannot make the service hammer the provider).
    async fn fetch_for(&self, kid: &str) -> Result<Key, KeyError> {
        let _turn = self.refreshing.lock().await;
        if !self.tried_lately() {
            let _ = self.refresh().await;
        }
        let cache = self.read();
        usable(&cache, kid).ok_or_else(|| match &cache.last_error {
            Some(error) => KeyError::Unavailable(error.clone()),
            None => KeyError::Unknown(kid.chars().take(64).collect()),
        })
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // One fetch at a time; a request that finds one under way does not queue another.
            let Ok(_turn) = this.refreshing.try_lock() else {
                return;
            };
            if !this.tried_lately() {
                let _ = this.refresh().await;
            }
        });
    }

    fn tried_lately(&self) -> bool {
        self.read()
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.options.min_refresh_interval)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the set; on success it replaces the cached keys, on failure they stay. The
    /// attempt counts from its start: a slow provider is not asked again meanwhile.
    async fn refresh(&self) -> Result<usize, String> {
        let started = Instant::now();
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .attempted_at = Some(started);
        let fetched = self.fetch().await.and_then(|bytes| usable_keys(&bytes));
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                cache.keys = keys;
                cache.fetched_at = Some(started);
                cache.last_error = None;
                Ok(count)
            }
            Err(error) => {
                metrics::counter!("jwks_fetch_failures_total").increment(1);
                tracing::warn!(%error, "fetching the identity provider's keys failed");
                cache.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            KeySource::File(path) => std::fs::read(path).map_err(|e| e.to_string()),
            KeySource::Url(url) => {
                let mut response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("GET {url}: {}", response.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?
                {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(format!("GET {url}: larger than {MAX_JWKS_BYTES} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
        }
    }
}

impl Cache {
    fn age(&self) -> Option<Duration> {
        self.fetched_at.map(|at| at.elapsed())
    }
}

/// The cached key, unless the set was fetched more than [`MAX_STALENESS`] ago: while the
/// provider cannot be reached, the keys it published last stay in use, but not forever (one it
/// withdrew meanwhile must stop working at some point).
fn usable(cache: &Cache, kid: &str) -> Option<Key> {
    let age = cache.age()?;
    (age < MAX_STALENESS)
        .then(|| cache.keys.get(kid).cloned())
        .flatten()
}

impl Key {
    fn checking(&self, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        if self.algorithms.contains(&alg) {
            Ok(self.decoding.clone())
        } else {
            Err(KeyError::AlgorithmMismatch)
        }
    }
}

/// The signing keys of a JWKS, by `kid`. Symmetric (`oct`) keys are never taken from a JWKS:
/// a public document must not hand out what checks an HMAC.
fn usable_keys(bytes: &[u8]) -> Result<HashMap<String, Key>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: HashMap<String, Key> = set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let algorithms = algorithms(jwk);
            if algorithms.is_empty() || jwk.common.public_key_use == Some(PublicKeyUse::Encryption)
            {
                return None;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(decoding) => Some((
                    kid,
                    Key {
                        decoding,
                        algorithms,
                    },
                )),
                Err(error) => {
                    tracing::warn!(%kid, %error, "skipping a key of the JWKS");
                    None
                }
            }
        })
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no signing key with a `kid`".into());
    }
    Ok(keys)
}

/// The algorithms a key may check: the one its `alg` names, else those of its type and curve.
fn algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    use Algorithm::*;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![EdDSA]
        }
        AlgorithmParameters::OctetKeyPair(_) => vec![],
        AlgorithmParameters::OctetKey(_) => vec![],
    };
    match &jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = serde_json::to_value(named)
                .ok()
                .and_then(|v| v.as_str().and_then(|s| Algorithm::from_str(s).ok()));
            named
                .filter(|alg| by_type.contains(alg))
                .into_iter()
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symmetric_key_or_an_encryption_key_is_never_taken_from_a_jwks() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]});
        let error = usable_keys(&serde_json::to_vec(&set).unwrap())
            .err()
            .unwrap();
        assert!(error.contains("no signing key"), "{error}");
    }

    #[test]
    fn a_key_checks_only_the_algorithm_it_names_and_only_one_of_its_type() {
        let rsa = |alg: &str| {
            serde_json::from_value::<Jwk>(serde_json::json!({"kty": "RSA", "kid": "k", "alg": alg,
                "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
                "e": "AQAB"})).unwrap()
        };
        assert_eq!(algorithms(&rsa("RS256")), [Algorithm::RS256]);
        assert_eq!(algorithms(&rsa("ES256")), []);
        assert_eq!(algorithms(&rsa("HS256")), []);
    }
}
