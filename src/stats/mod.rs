//! Pure preference statistics: binomial tests, confidence intervals, multiple-comparison
//! corrections, Bradley-Terry ratings, bootstrap, agreement. No I/O, no database.
