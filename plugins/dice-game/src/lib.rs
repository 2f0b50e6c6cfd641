//! `dice-game`: rolls dice in tabletop notation for the game's dice mini-game
//! (`POST /api/v1/dice-game/roll` with `{"dice": "2d6+1"}`).

use std::sync::Mutex;

use plugin_api::prelude::*;

/// Limits and RNG, read from `[plugins.dice-game]` in the host config.
pub struct DiceGame {
    limits: Limits,
    rng: Mutex<fastrand::Rng>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    max_dice: Option<u32>,
    #[serde(default)]
    max_sides: Option<u32>,
    /// Fixes the RNG seed, for reproducible play-tests.
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_dice: u32,
    max_sides: u32,
}

impl Plugin for DiceGame {
    const MANIFEST: PluginManifest =
        PluginManifest::new("dice-game", "Dice Game", env!("CARGO_PKG_VERSION"))
            .description("Rolls dice in tabletop notation such as 2d6+1")
            .tags(&["dice-game"])
            .permissions(&["log:emit"]);

    const ROUTES: &'static [Route<Self>] = &[
        // Stateless and harmless: anyone may roll.
        Route::post(
            "/dice-game/roll",
            "Roll dice, e.g. {\"dice\": \"2d6+1\"}",
            roll,
        )
        .public()
        .request::<RollRequest>()
        .response::<RollResponse>(),
    ];

    async fn on_load(context: LoadContext) -> Result<Self, PluginError> {
        let settings: Settings = context.config_as()?;
        let limits = Limits {
            max_dice: settings.max_dice.unwrap_or(100),
            max_sides: settings.max_sides.unwrap_or(1000),
        };
        let rng = match settings.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        log::info!(
            "dice limits: at most {} dice of at most {} sides",
            limits.max_dice,
            limits.max_sides
        );
        Ok(DiceGame {
            limits,
            rng: Mutex::new(rng),
        })
    }
}

/// `POST /dice-game/roll`.
#[derive(Deserialize, JsonSchema)]
struct RollRequest {
    /// `NdS+M`: up to 100 dice (N, 1 when left out) of 2 to 1000 sides (S), plus or minus
    /// at most 1000000 (M, optional). The pattern states the default limits; an operator's
    /// `max_dice` or `max_sides` narrows them further (400).
    #[schemars(pattern(DICE_NOTATION))]
    dice: String,
}

/// The notation's pattern: what `parse_notation` reads within the default `Limits`, in the
/// forms it writes (no leading zeros, no surrounding space).
const DICE_NOTATION: &str =
    r"^(100|[1-9][0-9]?)?[dD](1000|[1-9][0-9]{1,2}|[2-9])([+-](1000000|[1-9][0-9]{0,5}|0))?$";

#[derive(Serialize, JsonSchema)]
struct RollResponse {
    dice: String,
    rolls: Vec<u32>,
    total: i64,
}

async fn roll(game: &DiceGame, request: Request<'_>) -> Result<Json<RollResponse>, ApiError> {
    let RollRequest { dice } = request.json()?;
    let notation = parse_notation(&dice).map_err(|msg| {
        ApiError::validation("value_error", vec![json!("body"), json!("dice")], msg)
    })?;
    notation.check(game.limits).map_err(ApiError::bad_request)?;
    let rolls: Vec<u32> = {
        let mut rng = game
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (0..notation.count)
            .map(|_| rng.u32(1..=notation.sides))
            .collect()
    };
    let total = rolls.iter().map(|&r| i64::from(r)).sum::<i64>() + notation.modifier;
    Ok(Json(RollResponse { dice, rolls, total }))
}

/// `NdS+M`: `count` dice of `sides` sides plus `modifier`.
#[derive(Debug, PartialEq, Eq)]
struct Notation {
    count: u32,
    sides: u32,
    modifier: i64,
}

impl Notation {
    fn check(&self, limits: Limits) -> Result<(), String> {
        if self.count == 0 || self.count > limits.max_dice {
            return Err(format!(
                "dice count must be between 1 and {}, got {}",
                limits.max_dice, self.count
            ));
        }
        if self.sides < 2 || self.sides > limits.max_sides {
            return Err(format!(
                "dice must have between 2 and {} sides, got {}",
                limits.max_sides, self.sides
            ));
        }
        if self.modifier.abs() > 1_000_000 {
            return Err(format!(
                "modifier must be between -1000000 and 1000000, got {}",
                self.modifier
            ));
        }
        Ok(())
    }
}

fn parse_notation(text: &str) -> Result<Notation, String> {
    let malformed = || format!("expected dice notation like 2d6 or 3d8+2, got {text:?}");
    let lower = text.trim().to_ascii_lowercase();
    let (count, rest) = lower.split_once('d').ok_or_else(malformed)?;
    let (sides, modifier) = match rest.find(['+', '-']) {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, ""),
    };
    let number = |digits: &str| -> Result<u64, String> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        // Saturate absurd numbers so the limit check, not the parser, reports them.
        Ok(digits.parse::<u64>().unwrap_or(u64::MAX))
    };
    let count = if count.is_empty() { 1 } else { number(count)? };
    let sides = number(sides)?;
    let modifier = match modifier.split_at_checked(1) {
        Some(("+", digits)) => number(digits)?.min(i64::MAX as u64) as i64,
        Some(("-", digits)) => -(number(digits)?.min(i64::MAX as u64) as i64),
        _ => 0,
    };
    Ok(Notation {
        count: count.min(u64::from(u32::MAX)) as u32,
        sides: sides.min(u64::from(u32::MAX)) as u32,
        modifier,
    })
}

export_plugin!(DiceGame);

#[cfg(test)]
mod tests {
    use super::*;
    use host::testing::TestHost;

    #[track_caller]
    fn check(text: &str, expected: Result<(u32, u32, i64), &str>) {
        match (parse_notation(text), expected) {
            (Ok(n), Ok((count, sides, modifier))) => {
                assert_eq!(
                    n,
                    Notation {
                        count,
                        sides,
                        modifier
                    }
                )
            }
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn notation() {
        check("2d6+1", Ok((2, 6, 1)));
        check("d20", Ok((1, 20, 0)));
        check("3D8-2", Ok((3, 8, -2)));
        check("2d", Err("expected dice notation"));
        check("2x6", Err("expected dice notation"));
        check("2d6+", Err("expected dice notation"));
        check("-2d6", Err("expected dice notation"));
        check("99999999999999999999d6", Ok((u32::MAX, 6, 0)));
    }

    #[test]
    fn the_route_rolls_within_bounds_and_rejects_bad_input() {
        let host = TestHost::new();
        let plugin = host.load::<DiceGame>(json!({"seed": 7})).unwrap();
        let response = plugin.post_json("/dice-game/roll", &json!({"dice": "2d6+1"}));
        assert_eq!(response.status, 200);
        let body = response.json_body();
        let rolls = body["rolls"].as_array().unwrap();
        assert_eq!(rolls.len(), 2);
        let sum: i64 = rolls.iter().map(|r| r.as_i64().unwrap()).sum();
        assert!(rolls.iter().all(|r| (1..=6).contains(&r.as_i64().unwrap())));
        assert_eq!(body["total"], sum + 1);

        let malformed = plugin.post_json("/dice-game/roll", &json!({"dice": "lots"}));
        assert_eq!(malformed.status, 422);
        assert_eq!(
            malformed.json_body()["detail"][0]["loc"],
            json!(["body", "dice"])
        );
        // Beyond the default limits the schema's pattern refuses (422), as documented.
        let absurd = plugin.post_json("/dice-game/roll", &json!({"dice": "1000000d6"}));
        assert_eq!(absurd.status, 422);
        assert_eq!(
            absurd.json_body()["detail"][0]["type"],
            "string_pattern_mismatch"
        );
        assert_eq!(plugin.post_json("/dice-game/roll", &json!({})).status, 422);
    }

    #[test]
    fn narrower_configured_limits_answer_400() {
        let host = TestHost::new();
        let plugin = host.load::<DiceGame>(json!({"max_dice": 3})).unwrap();
        assert_eq!(
            plugin
                .post_json("/dice-game/roll", &json!({"dice": "3d6"}))
                .status,
            200
        );
        assert_eq!(
            plugin
                .post_json("/dice-game/roll", &json!({"dice": "4d6"}))
                .status,
            400
        );
    }

    #[test]
    fn unknown_settings_fail_on_load() {
        let error = TestHost::new()
            .load::<DiceGame>(json!({"max_dic": 3}))
            .err()
            .unwrap();
        assert!(error.contains("on_load of dice-game failed"), "{error}");
        assert!(error.contains("max_dic"), "{error}");
    }
}
