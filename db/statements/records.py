"""NAS-Bench-101 records in and out of the job database (db.nb101_io)."""

# campaign_records: a campaign's results with their cells, by (cell, budget, repeat), streamed.
CAMPAIGN_RECORDS = """
SELECT r.cell_hash, r.epochs, r.repeat, r.trainable_parameters, r.total_time, r.evaluations,
       r.halfway_training_time, r.halfway_train_accuracy, r.halfway_validation_accuracy,
       r.halfway_test_accuracy,
       r.final_training_time, r.final_train_accuracy, r.final_validation_accuracy,
       r.final_test_accuracy,
       cl.matrix, cl.ops
FROM results r JOIN cells cl ON cl.hash = r.cell_hash
WHERE r.campaign_id = :campaign_id
ORDER BY r.cell_hash, r.epochs, r.repeat
"""

# --- loading published records as a campaign of done jobs (the campaign and its jobs exist) ---------
# The records go to a temporary table first, then into results in one statement matched to the
# campaign's jobs; a record whose job has a result already is skipped (re-importing adds nothing).
CREATE_IMPORT_TABLE = """
CREATE TEMPORARY TABLE nb101_import (
    cell_hash VARCHAR(32), epochs SMALLINT, repeat SMALLINT, trainable_parameters BIGINT,
    total_time DOUBLE PRECISION, evaluations TEXT,
    halfway_training_time DOUBLE PRECISION, halfway_train_accuracy DOUBLE PRECISION,
    halfway_validation_accuracy DOUBLE PRECISION, halfway_test_accuracy DOUBLE PRECISION,
    final_training_time DOUBLE PRECISION, final_train_accuracy DOUBLE PRECISION,
    final_validation_accuracy DOUBLE PRECISION, final_test_accuracy DOUBLE PRECISION)
"""
INSERT_IMPORT_ROW = """
INSERT INTO nb101_import (cell_hash, epochs, repeat, trainable_parameters, total_time, evaluations,
    halfway_training_time, halfway_train_accuracy, halfway_validation_accuracy, halfway_test_accuracy,
    final_training_time, final_train_accuracy, final_validation_accuracy, final_test_accuracy)
VALUES (:cell_hash, :epochs, :repeat, :trainable_parameters, :total_time, :evaluations,
    :halfway_training_time, :halfway_train_accuracy, :halfway_validation_accuracy,
    :halfway_test_accuracy,
    :final_training_time, :final_train_accuracy, :final_validation_accuracy, :final_test_accuracy)
"""
STORE_IMPORTED_RESULTS = """
INSERT INTO results (job_id, campaign_id, attempt, created_at,
    cell_hash, epochs, repeat, trainable_parameters, total_time, evaluations,
    halfway_training_time, halfway_train_accuracy, halfway_validation_accuracy, halfway_test_accuracy,
    final_training_time, final_train_accuracy, final_validation_accuracy, final_test_accuracy)
SELECT j.id, j.campaign_id, 1, :now,
    s.cell_hash, s.epochs, s.repeat, s.trainable_parameters, s.total_time, s.evaluations,
    s.halfway_training_time, s.halfway_train_accuracy, s.halfway_validation_accuracy,
    s.halfway_test_accuracy,
    s.final_training_time, s.final_train_accuracy, s.final_validation_accuracy, s.final_test_accuracy
FROM nb101_import s
JOIN cells cl ON cl.hash = s.cell_hash
JOIN jobs j ON j.campaign_id = :campaign_id AND j.cell_id = cl.id AND j.epochs = s.epochs
           AND j.repeat = s.repeat
WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = j.id)
"""
# The status trigger keeps job_counts right; attempts = 1 records the published run.
MARK_IMPORTED_DONE = """
UPDATE jobs SET status = 'done', attempts = 1, finished_at = :now
WHERE campaign_id = :campaign_id AND status <> 'done'
  AND EXISTS (SELECT 1 FROM results r WHERE r.job_id = jobs.id)
"""
DROP_IMPORT_TABLE = "DROP TABLE nb101_import"
