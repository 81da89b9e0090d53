-- The schema of authgate 0.1.0 (migrations 1-3), as that release created it.
-- tests/blackbox/test_upgrade.py loads it, adds data, and upgrades it.
CREATE TABLE schema_migrations (
	version INTEGER NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
CREATE TABLE users (
	id VARCHAR(32) NOT NULL, 
	username VARCHAR(150) NOT NULL, 
	username_key VARCHAR(150) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	roles TEXT DEFAULT '[]' NOT NULL, 
	disabled BOOLEAN DEFAULT 0 NOT NULL, 
	created_at FLOAT NOT NULL, 
	tokens_valid_after FLOAT DEFAULT '0' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (username_key)
);
CREATE TABLE sessions (
	id VARCHAR(32) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	user_id VARCHAR(32) NOT NULL, 
	csrf_token VARCHAR(64) NOT NULL, 
	created_at FLOAT NOT NULL, 
	last_seen_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	idle_ttl INTEGER NOT NULL, 
	remember BOOLEAN DEFAULT 0 NOT NULL, 
	ip VARCHAR(64) DEFAULT '' NOT NULL, 
	user_agent VARCHAR(512) DEFAULT '' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (token_hash), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE token_families (
	id VARCHAR(32) NOT NULL, 
	user_id VARCHAR(32) NOT NULL, 
	scope TEXT DEFAULT '' NOT NULL, 
	created_at FLOAT NOT NULL, 
	last_seen_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	revoked_at FLOAT, 
	ip VARCHAR(64) DEFAULT '' NOT NULL, 
	user_agent VARCHAR(512) DEFAULT '' NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE refresh_tokens (
	token_hash VARCHAR(64) NOT NULL, 
	family_id VARCHAR(32) NOT NULL, 
	created_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	used_at FLOAT, 
	parent_hash VARCHAR(64), 
	PRIMARY KEY (token_hash), 
	FOREIGN KEY(family_id) REFERENCES token_families (id) ON DELETE CASCADE
);
CREATE TABLE signing_keys (
	kid VARCHAR(64) NOT NULL, 
	alg VARCHAR(16) NOT NULL, 
	private_pem TEXT NOT NULL, 
	public_jwk TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	signs_from FLOAT NOT NULL, 
	retired_at FLOAT, 
	drop_after FLOAT, 
	PRIMARY KEY (kid)
);
CREATE TABLE denied_jtis (
	jti VARCHAR(64) NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (jti)
);
CREATE TABLE revocations (
	id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE server_secrets (
	name VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (name)
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_token_families_user_id ON token_families (user_id);
CREATE INDEX ix_refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX ix_refresh_tokens_parent_hash ON refresh_tokens (parent_hash);
CREATE INDEX ix_denied_jtis_expires_at ON denied_jtis (expires_at);
CREATE INDEX ix_revocations_at ON revocations (at);
CREATE TABLE throttle (
	scope VARCHAR(8) NOT NULL, 
	"key" VARCHAR(160) NOT NULL, 
	failures INTEGER NOT NULL, 
	window_start FLOAT NOT NULL, 
	locked_until FLOAT NOT NULL, 
	PRIMARY KEY (scope, "key")
);
INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0), (2, 0), (3, 0);
