# placeholder: the preprocess stage fills this file
