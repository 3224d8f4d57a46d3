# placeholder: the cohort stage fills this file
