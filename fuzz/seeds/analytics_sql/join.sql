CREATE PUMP p AS INSERT INTO o SELECT STREAM s.sensor_id, r.site, s.temperature FROM SOURCE_SQL_STREAM_001 AS s LEFT JOIN REF AS r ON s.sensor_id = r.sensor_id WHERE s.temperature > 10;
