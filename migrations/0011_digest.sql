-- The daily digest: a user who asks for one gets it once a day at this local time (users.timezone).
ALTER TABLE users ADD COLUMN digest_time time;
GRANT UPDATE (digest_time) ON users TO tradedesk_user;
