-- Handing out a comparison is the hottest insert there is, and each foreign key on it costs
-- a lookup and a row lock (written to the WAL) on the row it names — seven per assignment,
-- several on rows every other request locks too (the study, the model pair, the pair the
-- votes update). All but one follow from others: the study is the participant's, and the
-- prompt, model pair and images are the pair's (or, for gold checks, images of the study),
-- which the scheduler read from the database; the application never deletes prompts,
-- images or pairs, and deleting a study deletes its assignments through its participants.
-- The participant's key stays: it is what deletes an assignment with its study.
-- (tools/load/run.sh, same run: 1,569-1,595 vote cycles/s with them, 1,670-1,744 without.)
ALTER TABLE assignments
    DROP CONSTRAINT IF EXISTS assignments_study_id_fkey,
    DROP CONSTRAINT IF EXISTS assignments_pair_id_fkey,
    DROP CONSTRAINT IF EXISTS assignments_prompt_id_fkey,
    DROP CONSTRAINT IF EXISTS assignments_model_pair_id_fkey,
    DROP CONSTRAINT IF EXISTS assignments_left_image_fkey,
    DROP CONSTRAINT IF EXISTS assignments_right_image_fkey;
