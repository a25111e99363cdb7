Console.Error.WriteLine("qana: no verbs are implemented yet");
return 2;
