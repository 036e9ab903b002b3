"""Arena: blind battles (`battles`), the Bradley–Terry rating (`rating`), the leaderboard built
from stored votes (`leaderboard`) and training-data exports of rated pairs (`export`)."""
