DROP TABLE provider_links;
ALTER TABLE provider_flows DROP COLUMN provider_url, DROP COLUMN link_session_id, DROP COLUMN browser_hash;
