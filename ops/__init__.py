"""Operations on a running deployment: what is queued where, and replaying dead letters."""
