-- Run once by the MySQL image's entrypoint on an empty datadir, after it
-- created MYSQL_USER (password from MYSQL_PASSWORD_FILE). The copier reads
-- the old shards' binlogs; `dualwrite-cluster schema` creates the databases.
GRANT ALL ON *.* TO 'dualwrite'@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'dualwrite'@'%';
