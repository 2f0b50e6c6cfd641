//! `game-dialogue`: `POST /api/v1/game/dialogue/next-line` builds the prompt for an NPC's
//! next line from the NPC, the player's relationship with it, where it is and the world
//! time, deterministically (no language model is called), and keeps a per-session history
//! in its own table (`game_dialogue__lines`, created by its own migrations, with a foreign
//! key to the session). The history is read through the host's `caller_sessions` view, so
//! only the caller's sessions' lines can ever come back.

use plugin_api::{
    game::{limits, relationship_tier, Npc, PresenceQuery, Session, SessionPath, DEFAULT_AFFINITY},
    prelude::*,
};

/// The plugin.
#[derive(Default)]
pub struct GameDialogue;

impl Plugin for GameDialogue {
    const MANIFEST: PluginManifest =
        PluginManifest::new("game-dialogue", "Game dialogue", env!("CARGO_PKG_VERSION"))
            .description("Builds an NPC's next dialogue line prompt from the game state")
            .tags(&["game-dialogue"])
            .depends_on(&["game-npcs ^1", "game-sessions ^1"])
            .permissions(&[
                "npc:read",
                "session:read",
                "location:read",
                "db:read",
                "db:write",
                "log:emit",
            ]);

    const ROUTES: &'static [Route<Self>] = &[
        Route::post(
            "/game/dialogue/next-line",
            "Build the prompt for an NPC's next line",
            next_line,
        )
        .request::<NextLineRequest>()
        .response::<NextLine>(),
        Route::get(
            "/game/dialogue/sessions/{session_id}/history",
            "The prompts built for a session, newest first",
            history,
        )
        .path::<SessionPath>()
        .response::<Vec<HistoryLine>>(),
    ];

    fn migrations() -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                description: "dialogue lines".into(),
                sql: include_str!("../migrations/0001_lines.sql").into(),
            },
            Migration {
                version: 2,
                description: "dialogue lines reference their session".into(),
                sql: include_str!("../migrations/0002_lines_reference_sessions.sql").into(),
            },
        ]
    }
}

/// The request body.
#[derive(Deserialize, JsonSchema)]
pub struct NextLineRequest {
    npc_id: i64,
    session_id: i64,
    /// What the player said (at most 4000 characters).
    #[serde(default)]
    #[schemars(length(max = limits::MAX_TEXT_CHARS))]
    player_input: Option<String>,
}

/// The answer: the prompt and the facts it was built from.
#[derive(Serialize, JsonSchema)]
pub struct NextLine {
    npc_id: i64,
    session_id: i64,
    prompt: String,
    context: PromptContext,
}

/// The facts a prompt is built from.
#[derive(Serialize, JsonSchema, Debug, PartialEq)]
pub struct PromptContext {
    npc_name: String,
    relationship_tier: String,
    location: Option<String>,
    day_of_week: String,
    time_of_day: String,
}

async fn next_line(_: &GameDialogue, request: Request<'_>) -> Result<Json<NextLine>, ApiError> {
    let raw: Value = request.json()?;
    let missing = |field: &str| raw.get(field).is_none_or(Value::is_null);
    if missing("npc_id") || missing("session_id") {
        return Err(ApiError::bad_request("npc_id and session_id are required"));
    }
    let body: NextLineRequest = request.json()?;
    if let Some(input) = &body.player_input {
        if let Err(message) = limits::check_length("player_input", input, limits::MAX_TEXT_CHARS) {
            return Err(ApiError::validation(
                "string_too_long",
                vec![json!("body"), json!("player_input")],
                message,
            ));
        }
    }
    let host = request.host();
    let npc = host.get_npc(body.npc_id).await?;
    let session = host.get_session(body.session_id).await?;
    let location = where_is(host, &npc, &session).await?;
    let context = prompt_context(&npc, &session, location);
    let prompt = build_prompt(&npc, &session, &context, body.player_input.as_deref());
    host.db_execute(
        "INSERT INTO game_dialogue__lines (session_id, npc_id, player_input, prompt, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
        params![session.id, npc.id, body.player_input, &prompt, unix_now()],
    )
    .await?;
    Ok(Json(NextLine {
        npc_id: npc.id,
        session_id: session.id,
        prompt,
        context,
    }))
}

/// One line of a session's history.
#[derive(Serialize, JsonSchema)]
pub struct HistoryLine {
    npc_id: i64,
    player_input: Option<String>,
    prompt: String,
    created_at: i64,
}

async fn history(
    _: &GameDialogue,
    request: Request<'_>,
) -> Result<Json<Vec<HistoryLine>>, ApiError> {
    let session_id: i64 = request.param_as("session_id")?;
    let host = request.host();
    // Through the caller's sessions: another user's session id finds nothing here, whatever
    // checks this handler forgets.
    let rows = host
        .db_query(
            "SELECT l.npc_id, l.player_input, l.prompt, l.created_at \
             FROM game_dialogue__lines AS l JOIN caller_sessions AS s ON s.id = l.session_id \
             WHERE l.session_id = $1 ORDER BY l.id DESC LIMIT 50",
            params![session_id],
        )
        .await?;
    if rows.is_empty() {
        // No lines: say 404 for a session the caller cannot see, like the other routes.
        host.get_session(session_id).await?;
    }
    let lines = rows
        .iter()
        .map(|row| {
            Ok(HistoryLine {
                npc_id: row.get("npc_id")?,
                player_input: row.get("player_input")?,
                prompt: row.get("prompt")?,
                created_at: row.get("created_at")?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(lines))
}

/// The NPC's scheduled location at the session's world time, else its home.
async fn where_is(host: &Host, npc: &Npc, session: &Session) -> Result<Option<String>, ApiError> {
    let query = PresenceQuery {
        world_time: session.world_time,
        world_id: None,
        location_id: None,
    };
    let scheduled = host
        .npc_presence(&query)
        .await?
        .into_iter()
        .find(|p| p.npc_id == npc.id)
        .map(|p| p.location_id);
    let Some(location_id) = scheduled.or(npc.home_location_id) else {
        return Ok(None);
    };
    Ok(Some(host.get_location(location_id).await?.name))
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn prompt_context(npc: &Npc, session: &Session, location: Option<String>) -> PromptContext {
    let seconds = session.world_time.max(0.0);
    let day = ((seconds / 86_400.0).floor() as i64).rem_euclid(7) as usize;
    let in_day = seconds.rem_euclid(86_400.0) as i64;
    PromptContext {
        npc_name: npc.name.clone(),
        relationship_tier: relationship_tier(affinity(session, npc.id)).to_owned(),
        location,
        day_of_week: DAYS[day].to_owned(),
        time_of_day: format!("{:02}:{:02}", in_day / 3600, (in_day % 3600) / 60),
    }
}

fn relationship(session: &Session, npc_id: i64) -> Option<&Map<String, Value>> {
    session
        .relationships
        .get(format!("npc:{npc_id}"))?
        .as_object()
}

/// The relationship's affinity; an entry without one counts as the default (neutral).
fn affinity(session: &Session, npc_id: i64) -> f64 {
    relationship(session, npc_id)
        .and_then(|r| r.get("affinity"))
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_AFFINITY)
}

fn build_prompt(
    npc: &Npc,
    session: &Session,
    context: &PromptContext,
    player_input: Option<&str>,
) -> String {
    let traits = match npc.personality.as_object() {
        Some(map) if !map.is_empty() => {
            let mut pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", plain(v)))
                .collect();
            pairs.sort();
            pairs.join(", ")
        }
        _ => "not described".to_owned(),
    };
    let mut relation = format!("tier {}", context.relationship_tier);
    if let Some(entry) = relationship(session, npc.id) {
        for key in ["affinity", "trust", "chemistry", "tension"] {
            if let Some(value) = entry.get(key) {
                relation.push_str(&format!(", {key} {}", plain(value)));
            }
        }
        if let Some(flags) = entry.get("flags").and_then(Value::as_object) {
            let mut set: Vec<&str> = flags
                .iter()
                .filter(|(_, v)| **v == Value::Bool(true))
                .map(|(k, _)| k.as_str())
                .collect();
            set.sort_unstable();
            if !set.is_empty() {
                relation.push_str(&format!("; remembers: {}", set.join(", ")));
            }
        }
    }
    let place = context.location.as_deref().unwrap_or("somewhere unknown");
    let player = match player_input.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => format!("The player says: \"{text}\""),
        None => "The player approaches without saying anything.".to_owned(),
    };
    format!(
        "You are {name}, a character in PixSim7.\n\
         Personality: {traits}.\n\
         Relationship with the player: {relation}.\n\
         Location: {place}.\n\
         Time: {day} {time}.\n\
         {player}\n\
         Reply in character with one line of dialogue.",
        name = npc.name,
        day = context.day_of_week,
        time = context.time_of_day,
    )
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

export_plugin!(GameDialogue);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_built_from_npc_relationship_place_and_time() {
        let npc = Npc {
            id: 7,
            name: "Mara".into(),
            world_id: None,
            home_location_id: None,
            personality: json!({"temper": "calm", "likes": "books"}),
        };
        let session = Session {
            id: 1,
            user_id: None,
            world_id: None,
            scene_id: None,
            current_node_id: None,
            flags: json!({}),
            relationships: json!({"npc:7": {"affinity": 65, "trust": 40, "flags": {"caught_pickpocketing": true}}}),
            world_time: 86_400.0 + 14.0 * 3600.0 + 30.0 * 60.0,
            version: 1,
        };
        let context = prompt_context(&npc, &session, Some("Library".into()));
        assert_eq!(context.relationship_tier, "friendly");
        assert_eq!(
            (context.day_of_week.as_str(), context.time_of_day.as_str()),
            ("Tuesday", "14:30")
        );
        let prompt = build_prompt(&npc, &session, &context, Some(" hello "));
        assert_eq!(
            prompt,
            "You are Mara, a character in PixSim7.\n\
             Personality: likes: books, temper: calm.\n\
             Relationship with the player: tier friendly, affinity 65, trust 40; remembers: caught_pickpocketing.\n\
             Location: Library.\n\
             Time: Tuesday 14:30.\n\
             The player says: \"hello\"\n\
             Reply in character with one line of dialogue."
        );
        assert_eq!(relationship_tier(50.0), "neutral");
        assert_eq!(relationship_tier(10.0), "hostile");
    }

    #[test]
    fn the_manifest_is_valid() {
        let descriptor = plugin_api::descriptor_of::<GameDialogue>().unwrap();
        assert_eq!(descriptor.migrations.len(), 2);
    }

    mod with_the_host {
        use host::testing::TestHost;

        use super::super::*;

        #[test]
        fn a_line_is_kept_in_the_owners_history_and_no_one_elses() {
            let host = TestHost::new();
            let dialogue = host.load::<GameDialogue>(json!({})).unwrap();
            let (player, stranger) = (host.new_user(), host.new_user());
            let world = host.create_world(player, "Harbor");
            let session = host.create_session(player, Some(world.id));
            let npc = host.create_npc("Mara");

            let response = dialogue.post_json_as(
                player,
                "/game/dialogue/next-line",
                &json!({"npc_id": npc.id, "session_id": session.id, "player_input": " hello "}),
            );
            assert_eq!(response.status, 200, "{:?}", response.json_body());
            let line = response.json_body();
            assert_eq!(
                line["context"],
                json!({
                    "npc_name": "Mara", "relationship_tier": "neutral", "location": null,
                    "day_of_week": "Monday", "time_of_day": "00:00",
                })
            );
            let prompt = line["prompt"].as_str().unwrap();
            assert!(
                prompt.starts_with("You are Mara, a character in PixSim7.\n"),
                "{prompt}"
            );
            assert!(prompt.contains("The player says: \"hello\""), "{prompt}");

            let path = format!("/game/dialogue/sessions/{}/history", session.id);
            let history = dialogue.get_as(player, &path);
            assert_eq!(history.status, 200);
            let history = history.json_body();
            assert_eq!(history.as_array().unwrap().len(), 1);
            assert_eq!(history[0]["npc_id"], npc.id);
            assert_eq!(history[0]["player_input"], " hello ");
            assert_eq!(history[0]["prompt"], prompt);

            // The stranger cannot read the history, nor add to it.
            assert_eq!(dialogue.get_as(stranger, &path).status, 404);
            let refused = dialogue.post_json_as(
                stranger,
                "/game/dialogue/next-line",
                &json!({"npc_id": npc.id, "session_id": session.id}),
            );
            assert_eq!(refused.status, 404);
            // What the plugin's own table holds: still the one line.
            let count = dialogue
                .as_user(player, |host| async move {
                    host.db_query("SELECT count(*) AS n FROM game_dialogue__lines", vec![])
                        .await
                })
                .unwrap();
            assert_eq!(count.first().unwrap().get::<i64>("n").unwrap(), 1);
        }

        #[test]
        fn an_unknown_npc_writes_no_line() {
            let host = TestHost::new();
            let dialogue = host.load::<GameDialogue>(json!({})).unwrap();
            let player = host.new_user();
            let session = host.create_session(player, None);
            let response = dialogue.post_json_as(
                player,
                "/game/dialogue/next-line",
                &json!({"npc_id": 999, "session_id": session.id}),
            );
            assert_eq!(response.status, 404);
            let history = dialogue.get_as(
                player,
                &format!("/game/dialogue/sessions/{}/history", session.id),
            );
            assert_eq!((history.status, history.json_body()), (200, json!([])));
        }
    }
}
